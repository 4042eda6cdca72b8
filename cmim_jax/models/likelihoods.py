"""Decoder likelihoods log p(x|z), one per output type."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from cmim_jax import losses


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) for independent Bernoulli pixels with `logits`: [B, ...] x2 -> [B].

  Targets in [0, 1]; continuous intensities give the usual cross-entropy "likelihood".
  """
  log_probs = -optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), x)
  return jnp.sum(log_probs.reshape((x.shape[0], -1)), axis=-1)


def gaussian_log_likelihood(params: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) for a diagonal Gaussian: params [B, 2, ...] stacks (mean, logvar); x [B, ...] -> [B]."""
  batch = x.shape[0]
  mean = params[:, 0].reshape((batch, -1))
  logvar = params[:, 1].reshape((batch, -1))
  return losses.gaussian_log_prob(x.reshape((batch, -1)), mean, logvar)
