"""The contrastive diagnostics measure what they say: hand values, gradient share, a real model."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmim_jax import diagnostics, losses, objectives, training
from cmim_jax.data import mnist
from cmim_jax.tasks import images as image_tasks
from experiments.configs import mnist as mnist_config
from tests.conftest import make_synthetic_digits

TAU = 0.1


def test_pair_statistics_by_hand():
  anchors = jnp.eye(4)  # Orthogonal rows: negatives have cosine 0.
  positives = 2.0 * jnp.eye(4)  # Same directions: positives have cosine 1.
  logvar = jnp.full((4, 3), math.log(4.0))
  values = jax.jit(lambda a, p, v: diagnostics.pair_statistics(a, p, v, temperature=TAU))(
      anchors, positives, logvar)
  np.testing.assert_allclose(values["positive_cosine"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(values["negative_cosine_mean"], 0.0, atol=1e-7)
  np.testing.assert_allclose(values["negative_cosine_p95"], 0.0, atol=1e-7)
  np.testing.assert_allclose(values["posterior_std"], 2.0, rtol=1e-6)
  # p(k = i) = e^10 / (e^10 + mean of three e^0) > 0.99 for every row.
  np.testing.assert_allclose(values["frac_p_positive_gt_0.99"], 1.0)
  # All rows parallel: negatives as similar as positives, p = 1/2 for every row.
  parallel = diagnostics.pair_statistics(jnp.ones((4, 3)), jnp.ones((4, 3)), logvar,
                                         temperature=TAU)
  np.testing.assert_allclose(parallel["negative_cosine_p95"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(parallel["frac_p_positive_gt_0.99"], 0.0)


def test_negative_percentile_ignores_the_diagonal():
  anchors = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  values = diagnostics.pair_statistics(anchors, anchors, jnp.zeros((3, 2)), temperature=TAU)
  cosines = np.array([[1, 0, 1 / math.sqrt(2)], [0, 1, 1 / math.sqrt(2)],
                      [1 / math.sqrt(2), 1 / math.sqrt(2), 1]])
  negatives = cosines[~np.eye(3, dtype=bool)]
  np.testing.assert_allclose(values["negative_cosine_mean"], negatives.mean(), rtol=1e-6)
  np.testing.assert_allclose(values["negative_cosine_p95"], np.percentile(negatives, 95),
                             rtol=1e-6)


def test_gradient_share_matches_two_separate_gradients():
  params = {"encoder": {"w": jnp.array([1.0, -2.0])}, "decoder": {"w": jnp.array([3.0])}}

  def loss_and_part(p):
    part = jnp.sum(p["encoder"]["w"] ** 2)
    return part + jnp.sum(p["encoder"]["w"]) * p["decoder"]["w"][0], part

  share = jax.jit(diagnostics.gradient_share, static_argnums=0)(loss_and_part, params)
  total = jax.grad(lambda p: loss_and_part(p)[0])(params)["encoder"]
  part = jax.grad(lambda p: loss_and_part(p)[1])(params)["encoder"]
  np.testing.assert_allclose(share, optax.tree.norm(part) / optax.tree.norm(total), rtol=1e-6)


def _linear_cmim_share(x: np.ndarray, weight: float = 1.0) -> tuple[float, float]:
  """Contrastive gradient share and frac p > 0.99 of cMIM (contrastive_weight `weight`) on a
  linear auto-encoder at batch x."""
  batch, features = x.shape
  eps = 0.05 * jax.random.normal(jax.random.key(0), (batch, features))
  params = {"encoder": {"w": jnp.eye(features)},
            "decoder": {"w": jnp.eye(features)}}

  def loss_and_part(p):
    mu = x @ p["encoder"]["w"]
    logvar = jnp.full_like(mu, 2.0 * math.log(0.05))
    z = mu + eps
    log_px = -0.5 * jnp.sum(jnp.square(x - z @ p["decoder"]["w"]), axis=-1)
    contrastive = jnp.mean(losses.contrastive_log_prob(mu, z, temperature=TAU))
    return losses.a_mim_loss(log_px, z, mu, logvar) - weight * contrastive, -weight * contrastive

  share = float(diagnostics.gradient_share(loss_and_part, params))
  mu = x @ params["encoder"]["w"]
  stats = diagnostics.pair_statistics(mu, mu + eps, jnp.zeros_like(mu), temperature=TAU)
  return share, float(stats["frac_p_positive_gt_0.99"])


def test_contrastive_gradient_share_vanishes_for_distant_negatives_only():
  rng = np.random.default_rng(0)
  distant = np.eye(8, dtype=np.float32)  # Orthogonal encodings: every s_ij = 0, s_ii ~ 1/τ.
  # Unit rows at cosine ~0.97 from each other: negatives nearly as close as the positives.
  duplicates = (np.ones((8, 8)) + 0.2 * rng.normal(size=(8, 8))).astype(np.float32)
  duplicates /= np.linalg.norm(duplicates, axis=1, keepdims=True)
  distant_share, distant_certain = _linear_cmim_share(distant)
  duplicate_share, duplicate_certain = _linear_cmim_share(duplicates)
  assert distant_share < 0.005, distant_share
  assert distant_certain == 1.0
  assert duplicate_share > 0.2, duplicate_share
  assert duplicate_certain == 0.0


def _tiny(method_name, **loss_overrides):
  config = mnist_config.get_config()
  config.loss.method = method_name
  config.model.latent_dim = 4
  config.model.hidden_sizes = (16,)
  config.loss.projection_hidden = 8
  config.loss.update(loss_overrides)
  images, labels = make_synthetic_digits(16, seed=0, image_size=8)
  dataset = mnist.ImageDataset(images[..., None], labels.astype(np.int32), images[..., None],
                               labels.astype(np.int32), "synthetic")
  task = image_tasks.ImageTask(dataset, config)
  method = objectives.get_method(method_name)
  model = method.build_model(task, config)
  x = task.preprocess({"image": jnp.asarray(images[..., None])}, jax.random.key(0))
  params = model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  return config, method, model, params, x


@pytest.mark.parametrize("method_name", ["cmim", "cmim_sum", "cvae", "mim"])
def test_method_diagnostics_of_a_real_model(method_name):
  config, method, model, params, x = _tiny(method_name)
  values = jax.jit(lambda p, x, k: diagnostics.method_diagnostics(
      model, method, p, x, k, config.loss))(params, x, jax.random.key(3))
  names = {"positive_cosine", "negative_cosine_mean", "negative_cosine_p95", "posterior_std",
           "frac_p_positive_gt_0.99"}
  if method.contrastive:
    names.add("contrastive_grad_share")
  assert set(values) == {diagnostics.PREFIX + n for n in names}
  assert all(np.isfinite(float(v)) for v in values.values())
  if method.contrastive:
    assert 0 < float(values["diagnostics/contrastive_grad_share"]) < 10


def test_zero_contrastive_weight_has_zero_share_and_encoder_only_methods_have_none():
  config, method, model, params, x = _tiny("cmim", contrastive_weight=0.0)
  values = diagnostics.method_diagnostics(model, method, params, x, jax.random.key(3),
                                          config.loss)
  assert float(values["diagnostics/contrastive_grad_share"]) == 0.0
  config, method, model, params, x = _tiny("infonce")
  assert diagnostics.method_diagnostics(model, method, params, x, jax.random.key(3),
                                        config.loss) == {}


def test_every_logged_step_and_the_summary_carry_the_diagnostics(tiny_config, tmp_path):
  summary = training.train_and_evaluate(tiny_config, tmp_path)
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [2, 4, 6]
  for record in records:
    share = record["diagnostics/contrastive_grad_share"]
    assert 0 < share < 10 and -1 <= record["diagnostics/negative_cosine_p95"] <= 1
  assert summary["diagnostics"] == {k: v for k, v in records[-1].items()
                                    if k.startswith(diagnostics.PREFIX)}
  assert json.loads((tmp_path / "summary.json").read_text())["diagnostics"] == summary["diagnostics"]
  assert any((tmp_path / "tensorboard").iterdir())
