"""The image Perceiver encoder and decoder: patches, shapes, the informative `hidden`, registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import models
from cmim_jax.models import perceiver
from experiments.configs import mnist as mnist_config

IMAGE_SHAPE = (12, 12, 1)
TINY = dict(patch_size=4, width=16, num_heads=2, mlp_ratio=2)


def test_patchify_layout_and_round_trip():
  images = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  patches = perceiver.patchify(images, 2)
  assert patches.shape == (2, 6, 2 * 2 * 3)
  # Patch 1 is the second 2x2 block of the first block-row, pixels in row-major order.
  np.testing.assert_array_equal(patches[0, 1], images[0, 0:2, 2:4].reshape(-1))
  np.testing.assert_array_equal(perceiver.unpatchify(patches, (4, 6, 3), 2), images)


def test_patch_size_must_divide_the_image():
  with pytest.raises(ValueError, match="model.perceiver.patch_size=5 must divide"):
    perceiver.patchify(jnp.zeros((1, 12, 12, 1)), 5)


def test_encoder_shapes_and_logvar_bounds():
  encoder = perceiver.PerceiverImageEncoder(latent_dim=3, num_latents=4, num_layers=1,
                                            logvar_min=-2.0, logvar_max=1.0, **TINY)
  x = jax.random.uniform(jax.random.key(0), (5, *IMAGE_SHAPE))
  params = jax.jit(encoder.init)(jax.random.key(1), x)
  apply = jax.jit(encoder.apply)
  mu, logvar = apply(params, x)
  assert mu.shape == logvar.shape == (5, 3)
  assert float(logvar.min()) > -2.0 and float(logvar.max()) < 1.0
  assert params["params"]["positions"].shape == (9, 16)  # 3x3 patches of 4x4 pixels.
  # The encoder depends on where things are: moving the content changes mu.
  moved_mu, _ = apply(params, jnp.roll(x, 4, axis=1))
  assert not np.allclose(mu, moved_mu, atol=1e-4)


def test_decoder_hidden_is_the_input_of_the_output_layer():
  decoder = perceiver.PerceiverImageDecoder(IMAGE_SHAPE, num_memory_tokens=3, num_layers=1, **TINY)
  z = jax.random.normal(jax.random.key(0), (5, 3))
  params = jax.jit(decoder.init)(jax.random.key(1), z)
  logits, hidden = jax.jit(decoder.apply)(params, z)
  assert logits.shape == (5, *IMAGE_SHAPE) and hidden.shape == (5, 9 * 16)
  out = params["params"]["logits"]
  patches = hidden.reshape(5, 9, 16) @ out["kernel"] + out["bias"]
  np.testing.assert_allclose(perceiver.unpatchify(patches, IMAGE_SHAPE, 4), logits,
                             rtol=1e-5, atol=1e-5)
  x = (jax.random.uniform(jax.random.key(2), (5, *IMAGE_SHAPE)) > 0.5).astype(jnp.float32)
  assert decoder.log_likelihood(logits, x).shape == (5,)


def test_registered_and_built_from_the_config():
  assert "perceiver" in models.ENCODERS and "perceiver" in models.DECODERS
  config = mnist_config.get_config().model
  config.encoder = "perceiver"
  config.latent_dim = 4
  config.perceiver.update(width=16, num_heads=2, num_latents=4, encoder_layers=1,
                          decoder_memory_tokens=2, decoder_layers=1)
  model = models.build_autoencoder(config, IMAGE_SHAPE)
  assert isinstance(model.encoder, perceiver.PerceiverImageEncoder)
  assert isinstance(model.decoder, perceiver.PerceiverImageDecoder)
  x = jnp.zeros((2, *IMAGE_SHAPE))
  outputs = jax.jit(lambda key: model.apply(model.init(key, x, key), x, key))(jax.random.key(0))
  assert outputs["mu"].shape == (2, 4) and outputs["hidden"].shape == (2, 9 * 16)
  assert outputs["logits"].shape == (2, *IMAGE_SHAPE) and outputs["log_px"].shape == (2,)
