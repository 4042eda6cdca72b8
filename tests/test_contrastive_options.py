"""The anchor / positive options of the cMIM contrastive term (`objectives.contrastive_pair`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import losses, objectives
from experiments.configs import mnist as mnist_config
from experiments.configs import molecules as molecules_config
from tests.test_diagnostics import _tiny


def test_default_pair_is_the_cmim_loss():
  config, method, model, params, x = _tiny("cmim", contrastive_weight=3.0)
  key = jax.random.key(4)
  loss, terms = method.loss_fn(model, params, x, key, config.loss)
  out = model.apply({"params": params}, x, key)
  expected = losses.cmim_loss(out["log_px"], out["z"], out["mu"], out["logvar"],
                              temperature=config.loss.temperature, contrastive_weight=3.0,
                              logvar_floor=None)  # The encoder soft-clamps logvar itself.
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(terms["contrastive_log_prob"], jnp.mean(losses.contrastive_log_prob(
      out["mu"], out["z"], temperature=config.loss.temperature)), rtol=1e-6)


def test_options_are_checked():
  config, *_ = _tiny("cmim")
  assert objectives.contrastive_options(config.loss) == ("mu", "z")
  config.loss.contrastive_anchor = "z"
  with pytest.raises(ValueError, match="contrastive_positive='second_sample'"):
    objectives.contrastive_options(config.loss)
  config.loss.contrastive_anchor = "encoder"
  with pytest.raises(ValueError, match=r"contrastive_anchor must be one of \('mu', 'projection'"):
    objectives.contrastive_options(config.loss)
  config.loss.contrastive_anchor = "mu"
  config.loss.contrastive_positive = "z2"
  with pytest.raises(ValueError, match="contrastive_positive must be one of"):
    objectives.contrastive_options(config.loss)


def test_second_sample_is_an_independent_draw_of_the_posterior():
  config, _, model, params, x = _tiny("cmim", contrastive_anchor="z",
                                      contrastive_positive="second_sample")
  key = jax.random.key(5)
  out = model.apply({"params": params}, x, key)
  anchors, positives = objectives.contrastive_pair(out, key, config.loss)
  np.testing.assert_array_equal(anchors, out["z"])
  assert not np.allclose(positives, out["z"])
  # Both are mu + sigma * eps with standard normal eps.
  eps = (positives - out["mu"]) / jnp.exp(0.5 * out["logvar"])
  assert abs(float(jnp.mean(eps))) < 0.3 and 0.7 < float(jnp.std(eps)) < 1.3


def test_projection_anchor_adds_a_d_to_d_head_that_the_term_trains():
  config, method, model, params, x = _tiny("cmim", contrastive_anchor="projection")
  assert set(params) == {"encoder", "decoder", "projection"}
  key = jax.random.key(6)
  out = model.apply({"params": params}, x, key)
  anchors, positives = objectives.contrastive_pair(out, key, config.loss)
  assert anchors.shape == positives.shape == out["mu"].shape
  np.testing.assert_array_equal(anchors, out["projection"])
  grads = jax.grad(lambda p: method.loss_fn(model, p, x, key, config.loss)[0])(params)
  assert float(jnp.sum(jnp.abs(grads["projection"]["Dense_0"]["kernel"]))) > 0
  # Methods without the term never get the head.
  _, _, _, mim_params, _ = _tiny("mim", contrastive_anchor="projection")
  assert set(mim_params) == {"encoder", "decoder"}


@pytest.mark.parametrize("anchor,positive", [("mu", "second_sample"), ("projection", "z"),
                                             ("z", "second_sample")])
def test_every_option_gives_a_finite_loss_and_gradient(anchor, positive):
  config, method, model, params, x = _tiny("cmim_sum", contrastive_anchor=anchor,
                                           contrastive_positive=positive)
  (loss, terms), grads = jax.jit(jax.value_and_grad(
      lambda p: method.loss_fn(model, p, x, jax.random.key(7), config.loss), has_aux=True))(params)
  assert np.isfinite(float(loss)) and float(terms["contrastive_log_prob"]) <= 0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_paper_variants_set_the_papers_numbers():
  for variant, encoder in (("paper", "mlp"), ("paper_perceiver", "perceiver")):
    config = mnist_config.get_config(variant)
    assert (config.model.latent_dim, config.loss.temperature) == (64, 0.1)
    assert config.model.encoder == encoder
  molecules = molecules_config.get_config("paper")
  assert molecules.model.num_latents * molecules.model.latent_dim == 512
  assert molecules.loss.temperature == 1.0

