"""Shapes and contracts of the encoders, decoders and the auto-encoder wrapper."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cmim_jax import models
from experiments.configs import mnist as mnist_config


def _model_config(encoder):
  config = mnist_config.get_config().model
  config.encoder = encoder
  config.hidden_sizes = (32, 16)
  config.conv_features = (8, 16)
  config.conv_dense_size = 32
  config.latent_dim = 4
  return config


@pytest.mark.parametrize("encoder, hidden_size", [("mlp", 32), ("conv", 14 * 14 * 8)])
def test_autoencoder_outputs_have_documented_shapes(encoder, hidden_size):
  model = models.build_autoencoder(_model_config(encoder), (28, 28, 1))
  x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  params = model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  out = model.apply({"params": params}, x, jax.random.key(3))
  assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (3, 4)
  assert out["logits"].shape == (3, 28, 28, 1)
  assert out["hidden"].shape == (3, hidden_size)
  assert out["log_px"].shape == (3,) and np.all(np.asarray(out["log_px"]) < 0)
  mu, _ = model.apply({"params": params}, x, method="encode")
  logits, _ = model.apply({"params": params}, mu, method="decode")
  np.testing.assert_allclose(mu, out["mu"], rtol=1e-6)
  assert logits.shape == (3, 28, 28, 1)


def test_sampling_is_reparameterised_around_the_mean():
  model = models.build_autoencoder(_model_config("mlp"), (28, 28, 1))
  x = jnp.ones((2, 28, 28, 1)) * 0.5
  params = model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  a = model.apply({"params": params}, x, jax.random.key(3))
  b = model.apply({"params": params}, x, jax.random.key(4))
  assert not np.allclose(a["z"], b["z"])
  np.testing.assert_allclose(a["mu"], b["mu"])
  eps = (a["z"] - a["mu"]) / jnp.exp(0.5 * a["logvar"])
  np.testing.assert_allclose(eps, jax.random.normal(jax.random.key(3), (2, 4)), rtol=1e-4,
                             atol=1e-5)


def test_soft_clamp_bounds_logvar_and_keeps_gradients():
  x = jnp.array([-1e4, -20.0, 0.0, 20.0, 1e4])
  clamped = models.soft_clamp(x, -8.0, 4.0)
  assert np.all(np.asarray(clamped) >= -8.0) and np.all(np.asarray(clamped) <= 4.0)
  np.testing.assert_allclose(clamped[2], 0.0, atol=0.05)  # ~identity 4 units from the bounds.
  grads = jax.grad(lambda v: jnp.sum(models.soft_clamp(v, -8.0, 4.0)))(jnp.array([-9.0, 5.0]))
  assert np.all(np.asarray(grads) > 0)
  with pytest.raises(ValueError, match="low < high"):
    models.soft_clamp(x, 1.0, 1.0)


def test_encoder_logvar_respects_configured_range():
  config = _model_config("mlp")
  config.logvar_min, config.logvar_max = -2.0, 0.5
  model = models.build_autoencoder(config, (28, 28, 1))
  x = 100.0 * jax.random.normal(jax.random.key(0), (16, 28, 28, 1))
  params = model.init(jax.random.key(1), x, jax.random.key(2))["params"]
  _, logvar = model.apply({"params": params}, x, method="encode")
  assert float(logvar.min()) >= -2.0 and float(logvar.max()) <= 0.5


def test_prior_samples_are_standard_normal():
  z = models.sample_prior(jax.random.key(0), 20000, 3)
  assert z.shape == (20000, 3)
  np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=0.05)
  np.testing.assert_allclose(np.std(z, 0), 1.0, atol=0.05)


def test_unknown_architecture_lists_choices():
  config = _model_config("resnet")
  with pytest.raises(ValueError, match=r"Unknown model.encoder 'resnet'; choose one of"):
    models.build_autoencoder(config, (28, 28, 1))
  assert isinstance(config, ml_collections.ConfigDict)
