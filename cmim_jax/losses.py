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

import functools
import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)
# The default floor of the posterior log-variance in the A-MIM-based losses: the same bound the
# project's encoders put on it (`model.logvar_min`, soft-clamped in `models/gaussian.py`).
LOGVAR_FLOOR = -8.0
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
    valid_count = int(jax.device_get(mask).astype(bool).sum())  # On the host: also under jit.
    if valid_count < 2:
      raise ValueError(
          f"A contrastive term needs at least 2 valid rows; the mask marks {valid_count}. "
          "Pass a batch with more valid rows.")


def _unit_rows(u: jax.Array, v: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
  """u and v [B, D] cast to `dtype` and scaled to unit length per row."""
  if u.ndim != 2 or v.ndim != 2 or u.shape != v.shape:
    raise ValueError(
        f"Expected two [B, D] arrays of the same shape, got {u.shape} and {v.shape}. "
        "Flatten latents to [B, D] first.")
  u = u.astype(dtype)
  v = v.astype(dtype)
  u = u * jax.lax.rsqrt(jnp.sum(u * u, axis=-1, keepdims=True) + _NORM_EPS)
  v = v * jax.lax.rsqrt(jnp.sum(v * v, axis=-1, keepdims=True) + _NORM_EPS)
  return u, v


def _cosine_logits(u: jax.Array, v: jax.Array, temperature: float, dtype) -> jax.Array:
  """s_ij = cos(u_i, v_j) / temperature, [B, B], computed in `dtype`."""
  u, v = _unit_rows(u, v, dtype)
  return (u @ v.T) / temperature


def _check_block_size(block_size: int | None) -> None:
  if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
    raise ValueError(
        f"block_size must be a positive int (columns per block) or None (dense), got "
        f"{block_size!r}.")


def _is_dense(batch_size: int, block_size: int | None, axis_name) -> bool:
  """Whether a contrastive term takes the dense [B, B] path (no blocks, no device axis)."""
  _check_block_size(block_size)
  return axis_name is None and (block_size is None or block_size >= batch_size)


def _column_blocks(b: jax.Array, col_valid: jax.Array, block_size: int):
  """Splits the columns into K = ceil(C / block_size) blocks, padding with masked columns.

  Returns ([K, block, D] columns, [K, block] validity, [K, block] column indices).
  """
  num_columns, dim = b.shape
  num_blocks = -(-num_columns // block_size)
  padding = num_blocks * block_size - num_columns
  b = jnp.pad(b, ((0, padding), (0, 0)))
  col_valid = jnp.pad(col_valid, (0, padding))  # Pads with False.
  col_ids = jnp.arange(num_blocks * block_size)
  return (b.reshape(num_blocks, block_size, dim), col_valid.reshape(num_blocks, block_size),
          col_ids.reshape(num_blocks, block_size))


def _block_logits(a: jax.Array, row_ids: jax.Array, block) -> tuple[jax.Array, jax.Array]:
  """Logits a @ b_block^T [R, block] and which of them are negatives (valid, off-diagonal)."""
  b_block, valid_block, ids_block = block
  keep = valid_block[None, :] & (ids_block[None, :] != row_ids[:, None])
  return a @ b_block.T, keep


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _negative_logsumexp(a: jax.Array, b: jax.Array, col_valid: jax.Array, row_ids: jax.Array,
                        block_size: int) -> jax.Array:
  """lse_i = log sum_{j: col_valid_j, j != row_ids_i} exp(a_i . b_j), without an [R, C] array.

  An online log-sum-exp over column blocks: a running max m_i and a running sum l_i of
  exp(s_ij - m_i), rescaled by exp(m_old - m_new) when the max grows. The backward pass
  recomputes each block's logits (d lse_i / d s_ij is the softmax over the kept j), so both
  passes hold one [R, block_size] block at a time.

  Args:
    a: [R, D] row vectors.
    b: [C, D] column vectors.
    col_valid: bool [C], the columns that may be negatives.
    row_ids: int [R], the column index of each row's positive (excluded from its sum).
    block_size: columns per block (static); C need not be a multiple of it.

  Returns:
    [R] log-sum-exps, -inf for a row with no negatives.
  """
  return _negative_logsumexp_fwd(a, b, col_valid, row_ids, block_size)[0]


def _negative_logsumexp_fwd(a, b, col_valid, row_ids, block_size):
  def step(carry, block):
    running_max, running_sum = carry
    logits, keep = _block_logits(a, row_ids, block)
    logits = jnp.where(keep, logits, -jnp.inf)
    new_max = jnp.maximum(running_max, jnp.max(logits, axis=1))
    shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)  # No negative yet: avoids -inf - -inf.
    running_sum = (running_sum * jnp.exp(running_max - shift)
                   + jnp.sum(jnp.exp(logits - shift[:, None]), axis=1))
    return (new_max, running_sum), None

  init = (jnp.full_like(a[:, 0], -jnp.inf), jnp.zeros_like(a[:, 0]))  # *_like: a's device axes.
  (running_max, running_sum), _ = jax.lax.scan(
      step, init, _column_blocks(b, col_valid, block_size))
  lse = running_max + jnp.log(running_sum)
  return lse, (a, b, col_valid, row_ids, lse)


def _negative_logsumexp_bwd(block_size, residuals, cotangent):
  a, b, col_valid, row_ids, lse = residuals
  finite_lse = jnp.where(jnp.isfinite(lse), lse, 0.0)

  def step(grad_a, block):
    logits, keep = _block_logits(a, row_ids, block)
    grad_logits = jnp.where(keep, jnp.exp(logits - finite_lse[:, None]), 0.0) * cotangent[:, None]
    return grad_a + grad_logits @ block[0], grad_logits.T @ a

  grad_a, grad_b = jax.lax.scan(step, jnp.zeros_like(a),
                                _column_blocks(b, col_valid, block_size))
  return grad_a, grad_b.reshape(-1, b.shape[1])[:b.shape[0]], None, None


_negative_logsumexp.defvjp(_negative_logsumexp_fwd, _negative_logsumexp_bwd)


def _blockwise_log_prob(anchors, latents, *, temperature, denominator, mask, block_size,
                        axis_name):
  """contrastive_log_prob's rows from the online log-sum-exp over negatives (see there)."""
  dtype = _accumulation_dtype(anchors, latents)
  anchors, latents = _unit_rows(anchors, latents, dtype)
  anchors = anchors / temperature
  valid = _valid_rows(anchors.shape[0], mask)
  row_ids = jnp.arange(anchors.shape[0])
  all_latents, all_valid = latents, valid
  if axis_name is not None:  # This device's rows against every device's latents.
    all_latents = jax.lax.all_gather(latents, axis_name, tiled=True)
    all_valid = jax.lax.all_gather(valid, axis_name, tiled=True)
    row_ids = row_ids + jax.lax.axis_index(axis_name) * anchors.shape[0]
  _check_contrastive_rows(all_latents.shape[0], mask)
  positive = jnp.sum(anchors * latents, axis=-1)  # s_ii, [R].
  count = jnp.sum(all_valid)
  log_negatives = _negative_logsumexp(anchors, all_latents, all_valid, row_ids,
                                      block_size or all_latents.shape[0])
  if denominator == "mean":
    log_negatives = log_negatives - jnp.log(count.astype(dtype) - 1.0)
  log_prob = positive - jnp.logaddexp(positive, log_negatives)
  log_prob = jnp.where(count >= 2, log_prob, jnp.nan)  # Only reachable under jit.
  return jnp.where(valid, log_prob, 0.0)


def soft_floor(x: jax.Array, low: float) -> jax.Array:
  """Smoothly bounds `x` from below by `low`: low + softplus(x - low), i.e. the identity well
  above `low` and saturating at it, with a gradient that stays positive (a hard clip's is 0
  below). The final max only removes the softplus tail's float underflow. Used by
  `models.gaussian.soft_clamp` and by the A-MIM losses' `logvar_floor`."""
  return jnp.maximum(low + jax.nn.softplus(x - low), low)


def _floored_logvar(logvar: jax.Array, logvar_floor: float | None) -> jax.Array:
  return logvar if logvar_floor is None else soft_floor(logvar, logvar_floor)


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
    block_size: int | None = None,
    axis_name: str | None = None,
) -> jax.Array:
  """Log-probability that anchor i picks its own latent among the batch's latents.

  With s_ij = cos(anchors_i, latents_j) / temperature and n valid rows:
    "mean" (cMIM):   log p_i = s_ii - log(exp(s_ii) + 1/(n-1) * sum_{j != i, valid} exp(s_ij))
    "sum"  (cMIM-Σ): log p_i = s_ii - log(exp(s_ii) + sum_{j != i, valid} exp(s_ij))
  The "mean" denominator averages the negatives, so the term does not drift like -log B with the
  batch size; "mean" equals InfoNCE's log-softmax with the positive logit shifted by log(n - 1).

  Memory: the dense path (block_size None or >= B) forms [B, B] logits. With a block_size it
  takes the positive s_ii from the row pairs and log sum_{j != i} exp(s_ij) from an online
  log-sum-exp over column blocks whose backward pass recomputes the blocks, so neither pass holds
  more than [B, block_size] (B need not be a multiple of block_size). Both give the same values
  and gradients to rounding.

  Inside `shard_map` (or `pmap`), `axis_name` names the axis the batch is split over: the
  arguments are then this device's rows [B/n, D] (and mask [B/n]); the latents and mask are
  all-gathered, so each device scores its rows against all B latents, one [B/n, block_size] block
  at a time, and returns its rows' [B/n] log-probabilities (n counts valid rows on all devices).

  Args:
    anchors: [B, D] anchors (cMIM: encoder means).
    latents: [B, D] latents (cMIM: sampled z).
    temperature: positive scalar dividing the cosine similarities.
    denominator: "mean" or "sum".
    mask: optional bool [B] of valid rows.
    block_size: None for the dense path, else the number of columns per block.
    axis_name: optional mapped axis the batch is split over (see above); blockwise, with one
      block of all B columns when block_size is None.

  Returns:
    [B] log-probabilities, 0 for invalid rows.

  Raises:
    ValueError: on mismatched shapes, an unknown denominator, a block_size that is not a
      positive int, or fewer than 2 valid rows.
  """
  if denominator not in DENOMINATORS:
    raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}.")
  if not _is_dense(anchors.shape[0], block_size, axis_name):
    return _blockwise_log_prob(anchors, latents, temperature=temperature, denominator=denominator,
                               mask=mask, block_size=block_size, axis_name=axis_name)
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
    logvar_floor: float | None = LOGVAR_FLOOR,
) -> jax.Array:
  """Asymmetric MIM loss (A-MIM), sampling z from the encoder.

  loss = mean_i -[log p(x_i|z_i) + 0.5 * (log q(z_i|x_i) + log P(z_i))],  P(z) = N(0, I).

  The log q term rewards ever narrower posteriors: with an unconstrained log-variance head it
  drives logvar toward -inf until exp(-logvar) overflows and the loss is NaN. So log q is taken
  with logvar soft-floored at `logvar_floor` (`soft_floor`), as this project's encoders bound it
  (`model.logvar_min`, default -8, in `models/gaussian.py`); the author's A-MIM code clamps at
  -6. Pass None when the encoder bounds logvar itself (this project's objectives do, so their
  losses are unchanged), or a floor of your own.

  Args:
    log_px_given_z: [B] decoder log-likelihoods log p(x_i | z_i).
    z: [B, D] samples z_i ~ q(z|x_i).
    mu: [B, D] encoder means.
    logvar: [B, D] encoder log-variances.
    mask: optional bool [B] of valid rows.
    logvar_floor: the soft lower bound of logvar (None: logvar as given).

  Returns:
    Scalar loss.
  """
  valid = _valid_rows(z.shape[0], mask)
  log_q = gaussian_log_prob(z, mu, _floored_logvar(logvar, logvar_floor))
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
    logvar_floor: float | None = LOGVAR_FLOOR,
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
    logvar_floor: the soft lower bound of logvar in the A-MIM term (see `a_mim_loss`; None:
      logvar as given, for encoders that bound it themselves).

  Returns:
    Scalar loss.
  """
  valid = _valid_rows(z.shape[0], mask)
  contrastive = contrastive_log_prob(
      mu, z, temperature=temperature, denominator=denominator, mask=mask)
  return (a_mim_loss(log_px_given_z, z, mu, logvar, mask=mask, logvar_floor=logvar_floor)
          - contrastive_weight * _masked_mean(contrastive, valid))


def infonce_loss(
    u: jax.Array,
    v: jax.Array,
    *,
    temperature: float,
    mask: jax.Array | None = None,
    block_size: int | None = None,
    axis_name: str | None = None,
) -> jax.Array:
  """InfoNCE: -mean_i [s_ii - logsumexp_j s_ij], s_ij = cos(u_i, v_j) / temperature.

  The log-softmax of row i is contrastive_log_prob's "sum" term; `block_size` and `axis_name`
  work as there (a blockwise path without [B, B] arrays; this device's rows against all-gathered
  v inside `shard_map`, the mean then taken over the valid rows of all devices).

  Args:
    u: [B, D] first view's embeddings.
    v: [B, D] second view's embeddings; row i is the positive of u_i.
    temperature: positive scalar.
    mask: optional bool [B] of valid rows; j runs over valid rows only.
    block_size: None for the dense path, else the number of columns per block.
    axis_name: optional mapped axis the batch is split over.

  Returns:
    Scalar loss (the same on every device along `axis_name`).
  """
  if not _is_dense(u.shape[0], block_size, axis_name):
    log_softmax = _blockwise_log_prob(u, v, temperature=temperature, denominator="sum", mask=mask,
                                      block_size=block_size, axis_name=axis_name)
    valid = _valid_rows(u.shape[0], mask)
    total = jnp.sum(log_softmax)  # 0 on invalid rows.
    count = jnp.sum(valid)
    if axis_name is not None:
      total, count = jax.lax.psum((total, count), axis_name)
    return -total / jnp.maximum(count, 1)
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
