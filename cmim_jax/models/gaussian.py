"""Helpers shared by Gaussian encoders q(z|x) and the prior P(z) = N(0, I)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cmim_jax import losses


def soft_clamp(x: jax.Array, low: float, high: float) -> jax.Array:
  """Smoothly limits `x` to (low, high): identity well inside, softplus-saturating at the edges.

  Unlike a hard clip, the gradient stays positive near the bounds, so a posterior pushed against
  one can still move back. The final clip only removes the softplus tails' float overshoot
  (about exp(-(high - low))).
  """
  if not low < high:
    raise ValueError(f"soft_clamp needs low < high, got low={low}, high={high}.")
  x = high - jax.nn.softplus(high - x)
  return jnp.minimum(losses.soft_floor(x, low), high)


def gaussian_outputs(mu: jax.Array, logvar: jax.Array, logvar_min: float,
                     logvar_max: float) -> tuple[jax.Array, jax.Array]:
  """A Gaussian layer's raw (mu, logvar) [B, D] in any dtype -> float32 (mu, soft-clamped logvar).

  Under mixed precision the layers compute in bfloat16; sampling and the losses run in float32.
  """
  return (mu.astype(jnp.float32),
          soft_clamp(logvar.astype(jnp.float32), logvar_min, logvar_max))


def reparameterize(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """Samples z = mu + exp(logvar / 2) * eps, eps ~ N(0, I). [B, D] -> [B, D]."""
  eps = jax.random.normal(key, mu.shape, dtype=mu.dtype)
  return mu + jnp.exp(0.5 * logvar) * eps


def sample_prior(key: jax.Array, num_samples: int, latent_dim: int) -> jax.Array:
  """Samples the prior P(z) = N(0, I): returns [num_samples, latent_dim]."""
  return jax.random.normal(key, (num_samples, latent_dim))
