"""Loss terms of the (contrastive) Mutual Information Machine, as pure JAX functions.

This module imports `jax` only, so other projects can use it without our models or data code.
Every function is jit-, grad- and vmap-safe and accumulates in (at least) float32, whatever the
input dtype. Shapes: B = batch, D = latent size. `mask` is an optional bool [B] that marks the
valid rows of a padded batch; every mean below is over valid rows only.

References:
  Livne, "Contrastive Mutual Information Machine" (cMIM), arXiv:2509.21511.
  Livne, Swersky, Fleet, "MIM: Mutual Information Machine", arXiv:1910.03175.
  van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive Coding"
  (InfoNCE), arXiv:1807.03748.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)
_NORM_EPS = 1e-12
DENOMINATORS = ("mean", "sum")


def _accumulation_dtype(*arrays):
  """float32, or wider when an input is wider (float64 under `jax.enable_x64`)."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _valid_rows(batch_size: int, mask) -> jax.Array:
  """Returns the mask as bool [B] (all True when `mask` is None), checking its shape."""
  if mask is None:
    return jnp.ones((batch_size,), dtype=bool)
  mask = jnp.asarray(mask)
  if mask.shape != (batch_size,):
    raise ValueError(
        f"mask must have shape [B] = ({batch_size},) to match the batch, got {mask.shape}.")
  return mask.astype(bool)


def _masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of `values` [B] over rows where `valid` [B] is True."""
  count = jnp.sum(valid)
  return jnp.sum(jnp.where(valid, values, 0.0)) / jnp.maximum(count, 1)


def _check_contrastive_rows(batch_size: int, mask) -> None:
  """Raises when fewer than 2 valid rows leave no negatives for a contrastive term.

  The check runs at trace time from the static batch size, and eagerly when the mask is a
  concrete array. Under `jit` with a traced mask the count is unknown at trace time; a batch with
  fewer than 2 valid rows then yields NaN (never a silently finite number).
  """
  if batch_size < 2:
    raise ValueError(
        f"A contrastive term needs at least 2 rows (1 positive + >= 1 negative); the batch has "
        f"{batch_size}. Increase the batch size.")
  if mask is not None and not isinstance(mask, jax.core.Tracer):
    valid_count = int(jnp.sum(jnp.asarray(mask).astype(bool)))
    if valid_count < 2:
      raise ValueError(
          f"A contrastive term needs at least 2 valid rows; the mask marks {valid_count}. "
          "Pass a batch with more valid rows.")


def _cosine_logits(u: jax.Array, v: jax.Array, temperature: float, dtype) -> jax.Array:
  """s_ij = cos(u_i, v_j) / temperature, [B, B], computed in `dtype`."""
  if u.ndim != 2 or v.ndim != 2 or u.shape != v.shape:
    raise ValueError(
        f"Expected two [B, D] arrays of the same shape, got {u.shape} and {v.shape}. "
        "Flatten latents to [B, D] first.")
  u = u.astype(dtype)
  v = v.astype(dtype)
  u = u * jax.lax.rsqrt(jnp.sum(u * u, axis=-1, keepdims=True) + _NORM_EPS)
  v = v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + _NORM_EPS)
  return (u @ v.T) / temperature


def gaussian_log_prob(z: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """Log-density of a diagonal Gaussian, summed over the latent dimensions.

  log N(z; mu, diag(exp(logvar))) = sum_d -0.5 * [log 2pi + logvar_d + (z_d - mu_d)^2 / exp(logvar_d)]

  Args:
    z: [B, D] points.
    mu: [B, D] means.
    logvar: [B, D] log-variances.

  Returns:
    [B] log-densities.
  """
  dtype = _accumulation_dtype(z, mu, logvar)
  z, mu, logvar = (a.astype(dtype) for a in (z, mu, logvar))
  squared = jnp.square(z - mu) * jnp.exp(-logvar)
  return -0.5 * jnp.sum(_LOG_2PI + logvar + squared, axis=-1)


def standard_normal_log_prob(z: jax.Array) -> jax.Array:
  """log N(z; 0, I) summed over the last axis: [B, D] -> [B]. The prior P(z) of every model."""
  z = z.astype(_accumulation_dtype(z))
  return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)


def contrastive_log_prob(
    anchors: jax.Array,
    latents: jax.Array,
    *,
    temperature: float,
    denominator: str = "mean",
    mask: jax.Array | None = None,
) -> jax.Array:
  """Log-probability that anchor i picks its own latent among the batch's latents.

  With s_ij = cos(anchors_i, latents_j) / temperature and n valid rows:
    "mean" (cMIM):   log p_i = s_ii - log(exp(s_ii) + 1/(n-1) * sum_{j != i, valid} exp(s_ij))
    "sum"  (cMIM-Σ): log p_i = s_ii - log(exp(s_ii) + sum_{j != i, valid} exp(s_ij))
  The "mean" denominator averages the negatives, so the term does not drift like -log B with the
  batch size; "mean" equals InfoNCE's log-softmax with the positive logit shifted by log(n - 1).

  Args:
    anchors: [B, D] anchors (cMIM: encoder means).
    latents: [B, D] latents (cMIM: sampled z).
    temperature: positive scalar dividing the cosine similarities.
    denominator: "mean" or "sum".
    mask: optional bool [B] of valid rows.

  Returns:
    [B] log-probabilities, 0 for invalid rows.

  Raises:
    ValueError: on mismatched shapes, an unknown denominator, or fewer than 2 valid rows.
  """
  if denominator not in DENOMINATORS:
    raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}.")
  batch_size = anchors.shape[0]
  _check_contrastive_rows(batch_size, mask)
  valid = _valid_rows(batch_size, mask)
  dtype = _accumulation_dtype(anchors, latents)
  logits = _cosine_logits(anchors, latents, temperature, dtype)
  pair_valid = valid[:, None] & valid[None, :]
  logits = jnp.where(pair_valid, logits, 0.0)  # Keeps padding garbage out of the max in lse.
  diagonal = jnp.eye(batch_size, dtype=bool)
  negative_weight = jnp.asarray(1.0, dtype)
  if denominator == "mean":
    negative_weight = 1.0 / (jnp.sum(valid).astype(dtype) - 1.0)
  weights = jnp.where(diagonal, 1.0, jnp.where(pair_valid, negative_weight, 0.0)).astype(dtype)
  log_denominator = jax.nn.logsumexp(logits, axis=1, b=weights)
  log_prob = jnp.diagonal(logits) - log_denominator
  log_prob = jnp.where(jnp.sum(valid) >= 2, log_prob, jnp.nan)  # Only reachable under jit.
  return jnp.where(valid, log_prob, 0.0)


def a_mim_loss(
    log_px_given_z: jax.Array,
    z: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Asymmetric MIM loss (A-MIM), sampling z from the encoder.

  loss = mean_i -[log p(x_i|z_i) + 0.5 * (log q(z_i|x_i) + log P(z_i))],  P(z) = N(0, I).

  Args:
    log_px_given_z: [B] decoder log-likelihoods log p(x_i | z_i).
    z: [B, D] samples z_i ~ q(z|x_i).
    mu: [B, D] encoder means.
    logvar: [B, D] encoder log-variances.
    mask: optional bool [B] of valid rows.

  Returns:
    Scalar loss.
  """
  valid = _valid_rows(z.shape[0], mask)
  log_q = gaussian_log_prob(z, mu, logvar)
  log_prior = standard_normal_log_prob(z)
  per_example = -(log_px_given_z.astype(log_q.dtype) + 0.5 * (log_q + log_prior))
  return _masked_mean(per_example, valid)


def gaussian_kl_to_standard_normal(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form: [B, D] -> [B]."""
  dtype = _accumulation_dtype(mu, logvar)
  mu, logvar = mu.astype(dtype), logvar.astype(dtype)
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)


def vae_loss(
    log_px_given_z: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    *,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Negative ELBO: mean_i -log p(x_i|z_i) + KL(q(z|x_i) || N(0, I)).

  Args:
    log_px_given_z: [B] decoder log-likelihoods at z_i ~ q(z|x_i).
    mu: [B, D] encoder means.
    logvar: [B, D] encoder log-variances.
    mask: optional bool [B] of valid rows.

  Returns:
    Scalar loss.
  """
  valid = _valid_rows(mu.shape[0], mask)
  kl = gaussian_kl_to_standard_normal(mu, logvar)
  return _masked_mean(-log_px_given_z.astype(kl.dtype) + kl, valid)


def cmim_loss(
    log_px_given_z: jax.Array,
    z: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    *,
    temperature: float,
    denominator: str = "mean",
    contrastive_weight: float = 1.0,
    mask: jax.Array | None = None,
) -> jax.Array:
  """cMIM loss: A-MIM minus a weighted contrastive log-probability.

  loss = a_mim_loss - contrastive_weight * mean_i contrastive_log_prob(mu, z)_i,
  with the encoder means as anchors and the sampled z as latents. denominator="mean" is cMIM,
  "sum" is cMIM-Σ.

  Args:
    log_px_given_z: [B] decoder log-likelihoods log p(x_i | z_i).
    z: [B, D] samples z_i ~ q(z|x_i).
    mu: [B, D] encoder means.
    logvar: [B, D] encoder log-variances.
    temperature: positive scalar of the contrastive term.
    denominator: "mean" or "sum".
    contrastive_weight: weight of the contrastive term.
    mask: optional bool [B] of valid rows.

  Returns:
    Scalar loss.
  """
  valid = _valid_rows(z.shape[0], mask)
  contrastive = contrastive_log_prob(
      mu, z, temperature=temperature, denominator=denominator, mask=mask)
  return (a_mim_loss(log_px_given_z, z, mu, logvar, mask=mask)
          - contrastive_weight * _masked_mean(contrastive, valid))


def infonce_loss(
    u: jax.Array,
    v: jax.Array,
    *,
    temperature: float,
    mask: jax.Array | None = None,
) -> jax.Array:
  """InfoNCE: -mean_i [s_ii - logsumexp_j s_ij], s_ij = cos(u_i, v_j) / temperature.

  Args:
    u: [B, D] first view's embeddings.
    v: [B, D] second view's embeddings; row i is the positive of u_i.
    temperature: positive scalar.
    mask: optional bool [B] of valid rows; j runs over valid rows only.

  Returns:
    Scalar loss.
  """
  batch_size = u.shape[0]
  _check_contrastive_rows(batch_size, mask)
  valid = _valid_rows(batch_size, mask)
  logits = _cosine_logits(u, v, temperature, _accumulation_dtype(u, v))
  pair_valid = valid[:, None] & valid[None, :]
  logits = jnp.where(pair_valid, logits, 0.0)
  # The diagonal keeps padding rows' sums non-empty, so their (discarded) gradients stay finite.
  weights = (pair_valid | jnp.eye(batch_size, dtype=bool)).astype(logits.dtype)
  log_softmax = jnp.diagonal(logits) - jax.nn.logsumexp(logits, axis=1, b=weights)
  log_softmax = jnp.where(jnp.sum(valid) >= 2, log_softmax, jnp.nan)  # Only reachable under jit.
  return -_masked_mean(log_softmax, valid)
