"""The method registry: how each training method (`loss.method`) assembles its loss.

A method is a function `(model, params, x, key, loss_config, views) -> (loss, terms)`: it runs the
forward pass it needs and combines the pure terms of `cmim_jax.losses`. `x` [B, ...] is the batch
as model inputs; `views` is a tuple of `Method.num_views` independently augmented copies of it
(empty for methods that need none). `terms` is a dict of scalars logged beside the loss. The
`Method` record also says which model the method trains (`build_model`): whether it has a decoder
and whether it adds a projection head. Register new methods with `register`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from cmim_jax import losses
from cmim_jax.models import AutoEncoder, ProjectionHead

LossAndTerms = tuple[jax.Array, dict[str, jax.Array]]
MethodFn = Callable[..., LossAndTerms]


@dataclasses.dataclass(frozen=True)
class Method:
  """A training method.

  Attributes:
    name: the `loss.method` string.
    loss_fn: (model, params, x, key, loss_config, views=()) -> (scalar loss, dict of scalar terms).
    has_decoder: whether the method trains a decoder (and so has informative embeddings and a
      reconstruction loss). Without one, the model has no decoder parameters.
    num_views: how many augmented views of each batch the loss needs (0: none; the inputs are then
      never augmented for it by default).
    uses_projection: whether the model gets a projection head (`loss.projection_hidden`,
      `loss.projection_dim`) between the encoder means and the loss.
  """

  name: str
  loss_fn: MethodFn
  has_decoder: bool = True
  num_views: int = 0
  uses_projection: bool = False

  def build_model(self, task, config: ml_collections.ConfigDict) -> AutoEncoder:
    """`task`'s auto-encoder for `config.model`, shaped for this method.

    Training, evaluation and anything that restores this method's checkpoints build the model
    here, so the parameter tree always matches.
    """
    model = task.build_model(config.model)
    projection = (ProjectionHead(config.loss.projection_hidden, config.loss.projection_dim)
                  if self.uses_projection else None)
    return model.clone(decoder=model.decoder if self.has_decoder else None, projection=projection)


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


def _mim(model, params, x, key, cfg, views=()) -> LossAndTerms:
  del cfg, views
  out, log_px = _reconstruct(model, params, x, key)
  loss = losses.a_mim_loss(log_px, out["z"], out["mu"], out["logvar"])
  return loss, dict(reconstruction=-jnp.mean(log_px))


def _make_cmim(denominator: str) -> MethodFn:
  def cmim(model, params, x, key, cfg, views=()) -> LossAndTerms:
    del views
    out, log_px = _reconstruct(model, params, x, key)
    loss = losses.cmim_loss(log_px, out["z"], out["mu"], out["logvar"],
                            temperature=cfg.temperature, denominator=denominator,
                            contrastive_weight=cfg.contrastive_weight)
    return loss, dict(reconstruction=-jnp.mean(log_px),
                      contrastive_log_prob=_contrastive_term(out, cfg, denominator))
  return cmim


def _vae(model, params, x, key, cfg, views=()) -> LossAndTerms:
  del cfg, views
  out, log_px = _reconstruct(model, params, x, key)
  return losses.vae_loss(log_px, out["mu"], out["logvar"]), dict(
      reconstruction=-jnp.mean(log_px),
      kl=jnp.mean(losses.gaussian_kl_to_standard_normal(out["mu"], out["logvar"])))


def _cvae(model, params, x, key, cfg, views=()) -> LossAndTerms:
  del views
  out, log_px = _reconstruct(model, params, x, key)
  contrastive = _contrastive_term(out, cfg, "mean")
  loss = losses.vae_loss(log_px, out["mu"], out["logvar"]) - cfg.contrastive_weight * contrastive
  return loss, dict(
      reconstruction=-jnp.mean(log_px),
      kl=jnp.mean(losses.gaussian_kl_to_standard_normal(out["mu"], out["logvar"])),
      contrastive_log_prob=contrastive)


def _symmetric_infonce(model, params, views: Sequence[jax.Array], cfg) -> jax.Array:
  """InfoNCE between the projected means of two views, averaged over both directions."""
  if len(views) != 2:
    raise ValueError(f"The InfoNCE methods need 2 augmented views of the batch, got {len(views)}; "
                     "the train step makes them with task.views(batch, key, method.num_views).")
  # One encoder pass over both views: vmap over a leading view axis keeps the batch axis sharded.
  first, second = jax.vmap(lambda view: model.apply({"params": params}, view, method="project"))(
      jnp.stack(views))
  return 0.5 * (losses.infonce_loss(first, second, temperature=cfg.temperature)
                + losses.infonce_loss(second, first, temperature=cfg.temperature))


def _infonce(model, params, x, key, cfg, views=()) -> LossAndTerms:
  del x, key  # Encoder only: the clean batch and the sampling key are not used.
  contrastive = _symmetric_infonce(model, params, views, cfg)
  return contrastive, dict(infonce=contrastive)


def _infonce_x(model, params, x, key, cfg, views=()) -> LossAndTerms:
  """InfoNCE on the views plus -log p(x|z), z ~ q(z|x) of the clean x; gradients reach the encoder."""
  contrastive = _symmetric_infonce(model, params, views, cfg)
  _, log_px = _reconstruct(model, params, x, key)
  reconstruction = -jnp.mean(log_px)
  return (reconstruction + cfg.contrastive_weight * contrastive,
          dict(reconstruction=reconstruction, infonce=contrastive))


register(Method("mim", _mim))
register(Method("cmim", _make_cmim("mean")))
register(Method("cmim_sum", _make_cmim("sum")))
register(Method("vae", _vae))
register(Method("cvae", _cvae))
register(Method("infonce", _infonce, has_decoder=False, num_views=2, uses_projection=True))
register(Method("infonce_x", _infonce_x, num_views=2, uses_projection=True))
