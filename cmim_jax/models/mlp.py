"""MLP Gaussian encoder q(z|x) and Bernoulli decoder p(x|z) for images."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cmim_jax.models.gaussian import gaussian_outputs
from cmim_jax.models.likelihoods import PIXEL_LIKELIHOODS, gaussian_log_likelihood


def _gelu_stack(h: jax.Array, widths: Sequence[int], dtype: Any) -> jax.Array:
  """Dense + GELU for each width, computed in `dtype`; call it inside an `nn.compact` method
  (layers become its own)."""
  for width in widths:
    h = nn.gelu(nn.Dense(width, dtype=dtype)(h))
  return h


class GaussianMLPEncoder(nn.Module):
  """x [B, ...] -> (mu [B, D], logvar [B, D]), logvar soft-clamped to [logvar_min, logvar_max].

  Layers compute in `dtype` (parameters stay float32); mu and logvar come out float32.
  """

  latent_dim: int
  hidden_sizes: Sequence[int] = (512, 512)
  logvar_min: float = -8.0
  logvar_max: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = _gelu_stack(x.reshape((x.shape[0], -1)), self.hidden_sizes, self.dtype)
    mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="mu")(h)
    logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(h)
    return gaussian_outputs(mu, logvar, self.logvar_min, self.logvar_max)


class BernoulliMLPDecoder(nn.Module):
  """z [B, D] -> (outputs [B, *output_shape[:-1], C*K], hidden [B, hidden_sizes[-1]]).

  K is the pixel likelihood's parameter count per channel (`likelihood`: Bernoulli logits, K = 1,
  by default; see `cmim_jax.models.likelihoods`). `hidden` is the activation right before the
  output layer: the informative embedding (float32). Layers compute in `dtype`; the likelihood is
  computed in float32.
  """

  output_shape: Sequence[int]
  hidden_sizes: Sequence[int] = (512, 512)
  dtype: Any = jnp.float32
  likelihood: str = "bernoulli"

  def log_likelihood(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x|z) [B] of inputs x [B, *output_shape] under the decoder outputs."""
    return PIXEL_LIKELIHOODS[self.likelihood].log_prob(outputs, x)

  @nn.compact
  def __call__(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    del x  # Not autoregressive: the output depends on z alone.
    hidden = _gelu_stack(z, self.hidden_sizes, self.dtype)
    *pixels, channels = self.output_shape
    shape = (*pixels, channels * PIXEL_LIKELIHOODS[self.likelihood].params_per_channel)
    outputs = nn.Dense(int(np.prod(shape)), dtype=self.dtype, name="logits")(hidden)
    return outputs.reshape((z.shape[0], *shape)), hidden.astype(jnp.float32)


class GaussianMLPDecoder(nn.Module):
  """z [B, D] -> (params [B, 2, *output_shape] = (mean, logvar), hidden [B, hidden_sizes[-1]]).

  For real-valued data (e.g. the 2-D toy). The observation log-variance is predicted per example
  and soft-clamped like the encoder's. Layers compute in `dtype`; the outputs are float32.
  """

  output_shape: Sequence[int]
  hidden_sizes: Sequence[int] = (512, 512)
  logvar_min: float = -8.0
  logvar_max: float = 4.0
  dtype: Any = jnp.float32

  log_likelihood = staticmethod(gaussian_log_likelihood)

  @nn.compact
  def __call__(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    del x  # Not autoregressive: the output depends on z alone.
    hidden = _gelu_stack(z, self.hidden_sizes, self.dtype)
    size = int(np.prod(self.output_shape))
    mean, logvar = gaussian_outputs(nn.Dense(size, dtype=self.dtype, name="mean")(hidden),
                                    nn.Dense(size, dtype=self.dtype, name="logvar")(hidden),
                                    self.logvar_min, self.logvar_max)
    params = jnp.stack([mean, logvar], axis=1)
    return params.reshape((z.shape[0], 2, *self.output_shape)), hidden.astype(jnp.float32)
