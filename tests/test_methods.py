"""The method registry: every method x architecture trains, InfoNCE wiring, views, evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import losses, objectives, sharding, training
from cmim_jax.data import mnist
from cmim_jax.tasks import images as image_tasks
from cmim_jax.tasks.base import Task
from tests.conftest import make_synthetic_digits
from experiments.configs import mnist as mnist_config

METHODS = ("vae", "cvae", "mim", "cmim", "cmim_sum", "infonce", "infonce_x")
ARCHITECTURES = ("mlp", "conv", "perceiver")
IMAGE_SIZE = 12  # Small images keep every compile short; 12 suits conv (/4) and 4x4 patches.
BATCH = 16


def _config(method="cmim", architecture="mlp"):
  config = mnist_config.get_config()
  config.loss.method = method
  config.model.encoder = architecture
  config.model.latent_dim = 4
  config.model.hidden_sizes = (32,)
  config.model.conv_features = (4, 8)
  config.model.conv_dense_size = 16
  config.model.perceiver.update(width=8, num_heads=2, mlp_ratio=2, num_latents=4, encoder_layers=0,
                                decoder_memory_tokens=2, decoder_layers=0)
  config.loss.projection_hidden = 16
  config.loss.projection_dim = 8
  config.train.learning_rate = 3e-3
  # Two cheap ops keep the views' compile short here; test_augment.py covers every op.
  config.augment.update(max_shift=1, max_rotation_degrees=0.0, erase_probability=0.0,
                        crop_min_scale=1.0)
  return config


def _task(config):
  train_images, train_labels = make_synthetic_digits(64, seed=0, image_size=IMAGE_SIZE)
  test_images, test_labels = make_synthetic_digits(32, seed=1, image_size=IMAGE_SIZE)
  dataset = mnist.ImageDataset(train_images[..., None], train_labels.astype(np.int32),
                               test_images[..., None], test_labels.astype(np.int32), "synthetic")
  return image_tasks.ImageTask(dataset, config)


def test_registry_has_the_seven_methods_and_rejects_bad_names():
  assert set(METHODS) == set(objectives.METHODS)
  with pytest.raises(ValueError, match=r"Unknown loss.method 'simclr'; choose one of \[") as error:
    objectives.get_method("simclr")
  for name in METHODS:
    assert repr(name) in str(error.value)
  with pytest.raises(ValueError, match="already registered"):
    objectives.register(objectives.Method("cmim", objectives.METHODS["cmim"].loss_fn))


def test_method_records_decide_the_model():
  infonce, infonce_x, cmim = (objectives.get_method(n) for n in ("infonce", "infonce_x", "cmim"))
  assert not infonce.has_decoder and infonce.num_views == 2 and infonce.uses_projection
  assert infonce_x.has_decoder and infonce_x.num_views == 2 and infonce_x.uses_projection
  assert cmim.has_decoder and cmim.num_views == 0 and not cmim.uses_projection
  config = _config()
  task = _task(config)
  x = jnp.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 1))
  top_level = {}
  for method in (infonce, infonce_x, cmim):
    model = method.build_model(task, config)
    shapes = jax.eval_shape(lambda k, m=model: m.init(k, x, k), jax.random.key(0))["params"]
    top_level[method.name] = set(shapes)
  assert top_level == {"infonce": {"encoder", "projection"},
                       "infonce_x": {"encoder", "decoder", "projection"},
                       "cmim": {"encoder", "decoder"}}


# Every method on the MLP, cmim on every architecture and infonce_x (two views and a projection
# head beside the decoder) on the conv net; the rest of the grid is the slow tier.
DEFAULT_GRID = ({(m, "mlp") for m in METHODS} | {("cmim", a) for a in ARCHITECTURES}
                | {("infonce_x", "conv")})


@pytest.mark.parametrize("method, architecture", [
    pytest.param(m, a, marks=() if (m, a) in DEFAULT_GRID else pytest.mark.slow)
    for m in METHODS for a in ARCHITECTURES])
def test_every_method_and_architecture_trains_on_8_devices(method, architecture):
  config = _config(method, architecture)
  mesh = sharding.make_data_mesh()
  assert mesh.devices.size == 8
  task = _task(config)
  _, state, step = training.setup(config, objectives.get_method(method), task, mesh,
                                  jax.random.key(0))
  batch = jax.device_put({"image": task.train_arrays["image"][:BATCH]},
                         sharding.batch_sharded(mesh))
  losses = []
  for _ in range(20):  # Steps are cheap next to the compile.
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)), losses
  # One fixed batch: the loss falls although every step draws new z, views and binarisation.
  assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses


def test_infonce_is_symmetric_infonce_of_the_projected_means():
  config = _config("infonce_x")
  config.loss.infonce_weight = 0.5
  config.loss.contrastive_weight = 7.0  # cMIM's weight: infonce_x must not read it.
  task = _task(config)
  method = objectives.get_method("infonce_x")
  model = method.build_model(task, config)
  keys = jax.random.split(jax.random.key(0), 4)
  batch = {"image": jnp.asarray(task.train_arrays["image"][:8])}
  x = task.preprocess(batch, keys[0])
  views = task.views(batch, keys[1], 2)
  params = jax.jit(model.init)(keys[2], x, keys[3])["params"]

  def losses_and_reference(params):
    loss, terms = method.loss_fn(model, params, x, keys[3], config.loss, views)
    u, v = (model.apply({"params": params}, view, method="project") for view in views)
    tau = config.loss.infonce_temperature
    reference = 0.5 * (losses.infonce_loss(u, v, temperature=tau)
                       + losses.infonce_loss(v, u, temperature=tau))
    swapped, _ = objectives.get_method("infonce").loss_fn(model, params, x, keys[3], config.loss,
                                                          views[::-1])
    return loss, terms, reference, swapped

  loss, terms, reference, swapped = jax.jit(losses_and_reference)(params)
  np.testing.assert_allclose(terms["infonce"], reference, rtol=1e-6)
  np.testing.assert_allclose(swapped, reference, rtol=1e-6)
  np.testing.assert_allclose(loss, terms["reconstruction"] + 0.5 * terms["infonce"], rtol=1e-6)
  with pytest.raises(ValueError, match="need 2 augmented views"):
    method.loss_fn(model, params, x, keys[3], config.loss, views[:1])


def test_infonce_x_without_infonce_weight_falls_back_to_contrastive_weight():
  """Configs written before `loss.infonce_weight` existed weighted infonce_x's InfoNCE term by
  `loss.contrastive_weight`; they still train the objective they were written for."""
  config = _config("infonce_x")
  del config.loss["infonce_weight"]
  config.loss.contrastive_weight = 3.0
  assert objectives.infonce_weight(config.loss) == 3.0
  config.loss.infonce_weight = 100.0
  assert objectives.infonce_weight(config.loss) == 100.0


def test_views_are_augmented_and_other_methods_inputs_are_not():
  config = mnist_config.get_config()  # The default augmentations, all on.
  task = _task(config)
  batch = {"image": jnp.asarray(task.train_arrays["image"][:8])}
  key = jax.random.key(0)
  plain = image_tasks.preprocess_images(batch["image"], key, binarize=True)
  np.testing.assert_array_equal(jax.jit(task.preprocess)(batch, key), plain)
  assert task.views(batch, key, 0) == ()
  first, second = jax.jit(lambda b, k: task.views(b, k, 2))(batch, key)
  assert first.shape == second.shape == plain.shape and not np.array_equal(first, second)
  # apply_to_inputs augments every method's training inputs.
  config.augment.apply_to_inputs = True
  augmented = jax.jit(_task(config).preprocess)(batch, key)
  assert augmented.shape == plain.shape and not np.array_equal(augmented, plain)


def test_a_task_without_augmentations_refuses_views():

  class NoAugmentTask(Task):  # Only what `views` needs; the rest is not called.
    build_model = preprocess = evaluate = embedding_inputs = lambda *args: None
    embedding_splits = ()

  assert NoAugmentTask().views({}, jax.random.key(0), 0) == ()
  with pytest.raises(NotImplementedError, match="NoAugmentTask has no data augmentations"):
    NoAugmentTask().views({}, jax.random.key(0), 2)


def test_infonce_end_to_end_reports_no_reconstruction_loss(tiny_config, tmp_path):
  tiny_config.loss.method = "infonce"
  tiny_config.loss.projection_hidden = 16
  tiny_config.loss.projection_dim = 8
  tiny_config.train.num_steps = tiny_config.checkpoint.every_steps = 2
  summary = training.train_and_evaluate(tiny_config, tmp_path)
  assert summary["method"] == "infonce"
  assert "test_reconstruction_loss" not in summary
  assert 0.0 <= summary["knn5_accuracy_mean"] <= 1.0
