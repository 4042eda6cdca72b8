"""Diagnostics of the contrastive term: does it act on the encoder, and why (not)?

At the defaults the cMIM term can be inert: its positive pair (mu_i, z_i) has z_i close to mu_i, so
s_ii ~ 1/τ, p(k = i) ~ 1 and its gradient vanishes unless the negatives are nearly parallel. These
pure functions measure that on one batch; the training loop calls `method_diagnostics` (jitted)
at its log steps only, since the gradient share costs one more backward pass.

  contrastive_grad_share    ||∇_enc (-w * contrastive)|| / ||∇_enc loss||, over the encoder's
                            parameters (only for methods whose loss holds the term)
  positive_cosine           mean_i cos(a_i, p_i)
  negative_cosine_mean      mean_{i != j} cos(a_i, p_j)
  negative_cosine_p95       95th percentile of cos(a_i, p_j), i != j
  posterior_std             mean over rows and dimensions of exp(logvar / 2)
  frac_p_positive_gt_0.99   fraction of rows whose p(k = i) = exp(contrastive_log_prob_i) > 0.99

a and p are the anchors and positives of the configured pair (`objectives.contrastive_pair`); for
methods without the term (MIM, ...) they are the default pair (mu, z), so a MIM run shows what the
term would see. Shapes: B = batch, D = latent size.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cmim_jax import losses, objectives

PREFIX = "diagnostics/"
P_POSITIVE_THRESHOLD = 0.99


def _unit(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def pair_statistics(anchors: jax.Array, positives: jax.Array, logvar: jax.Array, *,
                    temperature: float, denominator: str = "mean") -> dict[str, jax.Array]:
  """Cosine geometry of a contrastive batch and how certain the term already is.

  Args:
    anchors: [B, D] anchors a_i.
    positives: [B, D] positives p_i (row j is a negative of anchor i != j).
    logvar: [B, D] encoder log-variances.
    temperature: the term's temperature.
    denominator: "mean" (cMIM) or "sum" (cMIM-Σ), as in `losses.contrastive_log_prob`.

  Returns:
    Scalars positive_cosine, negative_cosine_mean, negative_cosine_p95, posterior_std and
    frac_p_positive_gt_0.99 (see the module doc).
  """
  batch_size = anchors.shape[0]
  cosines = _unit(anchors) @ _unit(positives).T
  off_diagonal = np.flatnonzero(~np.eye(batch_size, dtype=bool))  # Static: B is known at trace.
  negatives = cosines.reshape(-1)[off_diagonal]
  log_p = losses.contrastive_log_prob(anchors, positives, temperature=temperature,
                                      denominator=denominator)
  return {
      "positive_cosine": jnp.mean(jnp.diagonal(cosines)),
      "negative_cosine_mean": jnp.mean(negatives),
      "negative_cosine_p95": jnp.percentile(negatives, 95.0),
      "posterior_std": jnp.mean(jnp.exp(0.5 * logvar.astype(cosines.dtype))),
      f"frac_p_positive_gt_{P_POSITIVE_THRESHOLD}": jnp.mean(
          (jnp.exp(log_p) > P_POSITIVE_THRESHOLD).astype(cosines.dtype)),
  }


def gradient_share(loss_and_part: Callable[[Any], tuple[jax.Array, jax.Array]], params,
                   subtree: str | None = "encoder") -> jax.Array:
  """||∇ part|| / ||∇ loss|| over `params[subtree]` (all of `params` when subtree is None).

  Args:
    loss_and_part: params -> (scalar loss, scalar part of that loss), from one forward pass.
    params: the parameter tree.
    subtree: the top-level key whose gradient is measured, e.g. "encoder".

  Returns:
    Scalar ratio of the global norms (0 when both gradients vanish).
  """
  jacobian = jax.jacrev(lambda p: jnp.stack(loss_and_part(p)))(params)  # Leaves [2, ...].
  if subtree is not None:
    jacobian = jacobian[subtree]
  loss_norm = optax.tree.norm(jax.tree.map(lambda g: g[0], jacobian))
  part_norm = optax.tree.norm(jax.tree.map(lambda g: g[1], jacobian))
  return part_norm / jnp.maximum(loss_norm, 1e-30)


def method_diagnostics(model, method: objectives.Method, params, x: jax.Array, key: jax.Array,
                       loss_config: ml_collections.ConfigDict,
                       views: tuple[jax.Array, ...] = ()) -> dict[str, jax.Array]:
  """The diagnostics of `method` on one batch, named PREFIX + name (see the module doc).

  Args:
    model: the method's auto-encoder (`Method.build_model`).
    method: the training method.
    params: the model's parameters.
    x: [B, ...] the batch as model inputs (as the train step preprocesses it).
    key: the loss key of the train step (the same z as the step's loss).
    loss_config: the config's `loss`.
    views: the augmented views, for methods that use them.

  Returns:
    Scalars; {} for methods without a decoder (no posterior sample z to diagnose).
  """
  if not method.has_decoder:
    return {}
  outputs = model.apply({"params": params}, x, key)
  if method.contrastive:
    anchors, positives = objectives.contrastive_pair(outputs, key, loss_config)
  else:
    anchors, positives = outputs["mu"], outputs["z"]
  denominator = "sum" if method.name == "cmim_sum" else "mean"
  values = pair_statistics(anchors, positives, outputs["logvar"],
                           temperature=loss_config.temperature, denominator=denominator)
  if method.contrastive:
    def loss_and_part(p):
      loss, terms = method.loss_fn(model, p, x, key, loss_config, views)
      return loss, -loss_config.contrastive_weight * terms["contrastive_log_prob"]
    values["contrastive_grad_share"] = gradient_share(loss_and_part, params)
  return {PREFIX + name: value for name, value in values.items()}
