"""The method registry: how each training method (`loss.method`) assembles its loss.

A method is a function `(model, params, x, key, loss_config) -> (loss, terms)`: it runs the
forward pass it needs and combines the pure terms of `cmim_jax.losses`. `terms` is a dict of
scalars that are logged beside the loss. Register new methods with `register`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from cmim_jax import losses

LossAndTerms = tuple[jax.Array, dict[str, jax.Array]]
MethodFn = Callable[[Any, Any, jax.Array, jax.Array, ml_collections.ConfigDict], LossAndTerms]


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method.

  Attributes:
    name: the `loss.method` string.
    loss_fn: (model, params, x, key, loss_config) -> (scalar loss, dict of scalar terms).
    has_decoder: whether the method trains a decoder (and so has informative embeddings).
  """

  name: str
  loss_fn: MethodFn
  has_decoder: bool = True


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
  if method.name in METHODS:
    raise ValueError(f"Method {method.name!r} is already registered.")
  METHODS[method.name] = method
  return method


def get_method(name: str) -> Method:
  """The registered method `name`; a ValueError listing the valid names otherwise."""
  if name not in METHODS:
    raise ValueError(f"Unknown loss.method {name!r}; choose one of {sorted(METHODS)}.")
  return METHODS[name]


def _reconstruct(model, params, x, key):
  outputs = model.apply({"params": params}, x, key)
  return outputs, outputs["log_px"]


def _contrastive_term(outputs, cfg, denominator):
  return jnp.mean(losses.contrastive_log_prob(
      outputs["mu"], outputs["z"], temperature=cfg.temperature, denominator=denominator))


def _mim(model, params, x, key, cfg) -> LossAndTerms:
  del cfg
  out, log_px = _reconstruct(model, params, x, key)
  loss = losses.a_mim_loss(log_px, out["z"], out["mu"], out["logvar"])
  return loss, dict(reconstruction=-jnp.mean(log_px))


def _make_cmim(denominator: str) -> MethodFn:
  def cmim(model, params, x, key, cfg) -> LossAndTerms:
    out, log_px = _reconstruct(model, params, x, key)
    loss = losses.cmim_loss(log_px, out["z"], out["mu"], out["logvar"],
                            temperature=cfg.temperature, denominator=denominator,
                            contrastive_weight=cfg.contrastive_weight)
    return loss, dict(reconstruction=-jnp.mean(log_px),
                      contrastive_log_prob=_contrastive_term(out, cfg, denominator))
  return cmim


def _vae(model, params, x, key, cfg) -> LossAndTerms:
  del cfg
  out, log_px = _reconstruct(model, params, x, key)
  return losses.vae_loss(log_px, out["mu"], out["logvar"]), dict(
      reconstruction=-jnp.mean(log_px),
      kl=jnp.mean(losses.gaussian_kl_to_standard_normal(out["mu"], out["logvar"])))


def _cvae(model, params, x, key, cfg) -> LossAndTerms:
  out, log_px = _reconstruct(model, params, x, key)
  contrastive = _contrastive_term(out, cfg, "mean")
  loss = losses.vae_loss(log_px, out["mu"], out["logvar"]) - cfg.contrastive_weight * contrastive
  return loss, dict(
      reconstruction=-jnp.mean(log_px),
      kl=jnp.mean(losses.gaussian_kl_to_standard_normal(out["mu"], out["logvar"])),
      contrastive_log_prob=contrastive)


register(Method("mim", _mim))
register(Method("cmim", _make_cmim("mean")))
register(Method("cmim_sum", _make_cmim("sum")))
register(Method("vae", _vae))
register(Method("cvae", _cvae))
