"""Small convolutional Gaussian encoder and Bernoulli decoder for 28x28 images."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmim_jax.models.gaussian import gaussian_outputs
from cmim_jax.models.likelihoods import bernoulli_log_likelihood


class GaussianConvEncoder(nn.Module):
  """x [B, H, W, C] -> (mu [B, D], logvar [B, D]); two stride-2 convolutions then a dense layer.

  Layers compute in `dtype` (parameters stay float32); mu and logvar come out float32.
  """

  latent_dim: int
  features: Sequence[int] = (32, 64)
  dense_size: int = 256
  logvar_min: float = -8.0
  logvar_max: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = x
    for width in self.features:
      h = nn.gelu(nn.Conv(width, (3, 3), strides=(2, 2), dtype=self.dtype)(h))
    h = nn.gelu(nn.Dense(self.dense_size, dtype=self.dtype)(h.reshape((h.shape[0], -1))))
    mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="mu")(h)
    logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(h)
    return gaussian_outputs(mu, logvar, self.logvar_min, self.logvar_max)


class BernoulliConvDecoder(nn.Module):
  """z [B, D] -> (logits [B, H, W, C], hidden [B, H/2 * W/2 * features[-1]]).

  A dense layer to a (H/4, W/4) map, two stride-2 transposed convolutions; the second one is the
  output layer, so `hidden` is the flattened (H/2, W/2) feature map that feeds it (float32).
  Layers compute in `dtype`.
  """

  output_shape: Sequence[int]
  features: Sequence[int] = (64, 32)
  dtype: Any = jnp.float32

  log_likelihood = staticmethod(bernoulli_log_likelihood)

  @nn.compact
  def __call__(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    del x  # Not autoregressive: the output depends on z alone.
    height, width, channels = self.output_shape
    if height % 4 or width % 4:
      raise ValueError(f"The conv decoder needs H and W divisible by 4, got {height}x{width}.")
    h = nn.gelu(nn.Dense(height // 4 * width // 4 * self.features[0], dtype=self.dtype)(z))
    h = h.reshape((z.shape[0], height // 4, width // 4, self.features[0]))
    h = nn.gelu(nn.ConvTranspose(self.features[1], (3, 3), strides=(2, 2), dtype=self.dtype)(h))
    logits = nn.ConvTranspose(channels, (3, 3), strides=(2, 2), dtype=self.dtype, name="logits")(h)
    return logits, h.reshape((z.shape[0], -1)).astype(jnp.float32)
