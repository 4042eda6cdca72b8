"""Small convolutional Gaussian encoder and decoder (Bernoulli or 8-bit pixels) for images of any
size."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmim_jax.models.gaussian import gaussian_outputs
from cmim_jax.models.likelihoods import PIXEL_LIKELIHOODS


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
  """z [B, D] -> (outputs [B, H, W, C*K], hidden [B, H'/2 * W'/2 * features[-1]]).

  A dense layer to a (H'/4, W'/4) map, H' = H rounded up to a multiple of 4 (W' alike), two
  stride-2 transposed convolutions, cropped to H x W; the second one is the output layer, so
  `hidden` is the flattened (H'/2, W'/2) feature map that feeds it (float32). K is the pixel
  likelihood's parameter count per channel (`likelihood`: Bernoulli logits by default; see
  `cmim_jax.models.likelihoods`). Layers compute in `dtype`.
  """

  output_shape: Sequence[int]
  features: Sequence[int] = (64, 32)
  dtype: Any = jnp.float32
  likelihood: str = "bernoulli"

  def log_likelihood(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x|z) [B] of images x [B, H, W, C] under the decoder outputs."""
    return PIXEL_LIKELIHOODS[self.likelihood].log_prob(outputs, x)

  @nn.compact
  def __call__(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    del x  # Not autoregressive: the output depends on z alone.
    height, width, channels = self.output_shape
    rows, cols = -(-height // 4), -(-width // 4)
    h = nn.gelu(nn.Dense(rows * cols * self.features[0], dtype=self.dtype)(z))
    h = h.reshape((z.shape[0], rows, cols, self.features[0]))
    h = nn.gelu(nn.ConvTranspose(self.features[1], (3, 3), strides=(2, 2), dtype=self.dtype)(h))
    outputs = nn.ConvTranspose(channels * PIXEL_LIKELIHOODS[self.likelihood].params_per_channel,
                               (3, 3), strides=(2, 2), dtype=self.dtype, name="logits")(h)
    return outputs[:, :height, :width], h.reshape((z.shape[0], -1)).astype(jnp.float32)
