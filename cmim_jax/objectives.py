"""The method registry: how each training method (`loss.method`) assembles its loss.

A method is a function `(model, params, x, key, loss_config, views) -> (loss, terms)`: it runs the
forward pass it needs and combines the pure terms of `cmim_jax.losses`. `x` [B, ...] is the batch
as model inputs; `views` is a tuple of `Method.num_views` independently augmented copies of it
(empty for methods that need none). `terms` is a dict of scalars logged beside the loss. The
`Method` record also says which model the method trains (`build_model`): whether it has a decoder
and whether it adds a projection head. Register new methods with `register`.

The contrastive term of cMIM, cMIM-Σ and the contrastive VAE compares an anchor a_i with a
positive latent p_i among the batch's positives p_j (`losses.contrastive_log_prob(a, p)`, with
s_ij = cos(a_i, p_j) / τ). Which tensors these are is a free choice of the formulation, set by two
config fields (`contrastive_pair`):
  loss.contrastive_anchor:
    "mu"          a_i = mu_i, the encoder mean (the default; what the paper's equation writes).
    "projection"  a_i = g(mu_i), g: R^D -> R^D a deterministic MLP head (Dense(projection_hidden),
                  GELU, Dense(D)) trained with the term; the representation stays mu.
    "z"           a_i = z_i, the sample the decoder reconstructs (needs a second-sample positive:
                  against itself s_ii = 1/τ always).
  loss.contrastive_positive:
    "z"              p_i = z_i ~ q(z|x_i), the sample the decoder reconstructs (the default).
    "second_sample"  p_i = z'_i = mu_i + sigma_i * eps'_i, a second sample independent of z_i.
With anchor "mu" and positive "z", s_ii = cos(mu_i, mu_i + sigma_i eps_i) / τ tends to 1/τ as the
posterior narrows, p(k = i) tends to 1 and the term's gradient vanishes unless negatives are
nearly parallel (`cmim_jax.diagnostics` measures this); the other options change that geometry.

Every contrastive term (these and InfoNCE's) takes `loss.block_size` (0: dense [B, B] logits;
else the blockwise online log-sum-exp of `cmim_jax.losses`), and when the step is traced on a mesh
of several devices (`sharding.within_mesh`) each device scores its rows against the all-gathered
latents (`sharding.over_data_axis`), so no device forms the global [B, B] matrix.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from cmim_jax import errors, losses, sharding
from cmim_jax.models import AutoEncoder, ProjectionHead, reparameterize

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
    contrastive: whether the loss holds the cMIM contrastive term (logged as
      `contrastive_log_prob`, weighted by `loss.contrastive_weight`) built by `contrastive_pair`;
      such a method gets a D -> D head when `loss.contrastive_anchor` is "projection".
  """

  name: str
  loss_fn: MethodFn
  has_decoder: bool = True
  num_views: int = 0
  uses_projection: bool = False
  contrastive: bool = False

  def build_model(self, task, config: ml_collections.ConfigDict) -> AutoEncoder:
    """`task`'s auto-encoder for `config.model`, shaped for this method.

    Training, evaluation and anything that restores this method's checkpoints build the model
    here, so the parameter tree always matches.
    """
    model = task.build_model(config.model)
    projection = None
    if self.uses_projection:
      projection = ProjectionHead(config.loss.projection_hidden, config.loss.projection_dim)
    elif self.contrastive and contrastive_options(config.loss)[0] == "projection":
      projection = ProjectionHead(config.loss.projection_hidden, output_dim=None)  # R^D -> R^D.
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
    raise errors.ConfigError(f"Unknown loss.method {name!r}; choose one of {sorted(METHODS)}.")
  return METHODS[name]


def _reconstruct(model, params, x, key):
  outputs = model.apply({"params": params}, x, key)
  return outputs, outputs["log_px"]


ANCHORS = ("mu", "projection", "z")
POSITIVES = ("z", "second_sample")


def contrastive_options(cfg: ml_collections.ConfigDict) -> tuple[str, str]:
  """(anchor, positive) of `cfg` (a config's `loss`), checked; ("mu", "z") where unset."""
  anchor = cfg.get("contrastive_anchor", "mu")
  positive = cfg.get("contrastive_positive", "z")
  if anchor not in ANCHORS:
    raise errors.ConfigError(
        f"loss.contrastive_anchor must be one of {ANCHORS}, got {anchor!r}.")
  if positive not in POSITIVES:
    raise errors.ConfigError(
        f"loss.contrastive_positive must be one of {POSITIVES}, got {positive!r}.")
  if anchor == "z" and positive == "z":
    raise errors.ConfigError(
        "loss.contrastive_anchor='z' with loss.contrastive_positive='z' compares each sample "
        "with itself (s_ii = 1/temperature, no gradient); set "
        "loss.contrastive_positive='second_sample'.")
  return anchor, positive


def contrastive_pair(outputs: dict, key: jax.Array,
                     cfg: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """The anchors a [B, D] and positives p [B, D] of the contrastive term (see the module doc).

  Args:
    outputs: the auto-encoder's outputs (mu, logvar, z and, for the "projection" anchor,
      projection = g(mu)).
    key: the loss's key; the second sample uses a key folded from it (independent of z).
    cfg: the config's `loss`.
  """
  anchor, positive = contrastive_options(cfg)
  if positive == "second_sample":
    positives = reparameterize(jax.random.fold_in(key, 1), outputs["mu"], outputs["logvar"])
  else:
    positives = outputs["z"]
  return outputs[anchor], positives  # The anchor options name the outputs ("projection" = g(mu)).


def _block_size(cfg: ml_collections.ConfigDict) -> int | None:
  """`loss.block_size` as the losses take it: None (dense) for 0 or an unset field."""
  return cfg.get("block_size", 0) or None


def _contrastive_term(outputs, key, cfg, denominator):
  anchors, positives = contrastive_pair(outputs, key, cfg)
  log_prob = functools.partial(losses.contrastive_log_prob, temperature=cfg.temperature,
                               denominator=denominator, block_size=_block_size(cfg))
  return jnp.mean(sharding.over_data_axis(log_prob, anchors, positives))


def _mim(model, params, x, key, cfg, views=()) -> LossAndTerms:
  del cfg, views
  out, log_px = _reconstruct(model, params, x, key)
  loss = losses.a_mim_loss(log_px, out["z"], out["mu"], out["logvar"], logvar_floor=None)
  return loss, dict(reconstruction=-jnp.mean(log_px))


def _make_cmim(denominator: str) -> MethodFn:
  def cmim(model, params, x, key, cfg, views=()) -> LossAndTerms:
    del views
    out, log_px = _reconstruct(model, params, x, key)
    contrastive = _contrastive_term(out, key, cfg, denominator)
    loss = (losses.a_mim_loss(log_px, out["z"], out["mu"], out["logvar"], logvar_floor=None)
            - cfg.contrastive_weight * contrastive)  # = losses.cmim_loss for the default pair.
    return loss, dict(reconstruction=-jnp.mean(log_px), contrastive_log_prob=contrastive)
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
  contrastive = _contrastive_term(out, key, cfg, "mean")
  loss = losses.vae_loss(log_px, out["mu"], out["logvar"]) - cfg.contrastive_weight * contrastive
  return loss, dict(
      reconstruction=-jnp.mean(log_px),
      kl=jnp.mean(losses.gaussian_kl_to_standard_normal(out["mu"], out["logvar"])),
      contrastive_log_prob=contrastive)


def infonce_temperature(cfg: ml_collections.ConfigDict) -> float:
  """The InfoNCE methods' temperature: `loss.infonce_temperature`, or `loss.temperature` in configs
  without that field (those written before it existed used one temperature for every term)."""
  return cfg.get("infonce_temperature", cfg.temperature)


def infonce_weight(cfg: ml_collections.ConfigDict) -> float:
  """infonce_x's weight of its InfoNCE term next to the reconstruction: `loss.infonce_weight`, or
  `loss.contrastive_weight` in configs without that field (written before it existed)."""
  return cfg.get("infonce_weight", cfg.contrastive_weight)


def _symmetric_infonce(model, params, views: Sequence[jax.Array], cfg) -> jax.Array:
  """InfoNCE between the projected means of two views, averaged over both directions."""
  if len(views) != 2:
    raise ValueError(f"The InfoNCE methods need 2 augmented views of the batch, got {len(views)}; "
                     "the train step makes them with task.views(batch, key, method.num_views).")
  # One encoder pass over both views: vmap over a leading view axis keeps the batch axis sharded.
  first, second = jax.vmap(lambda view: model.apply({"params": params}, view, method="project"))(
      jnp.stack(views))
  infonce = functools.partial(losses.infonce_loss, temperature=infonce_temperature(cfg),
                              block_size=_block_size(cfg))
  return 0.5 * (sharding.over_data_axis(infonce, first, second, out_specs=jax.P())
                + sharding.over_data_axis(infonce, second, first, out_specs=jax.P()))


def _infonce(model, params, x, key, cfg, views=()) -> LossAndTerms:
  del x, key  # Encoder only: the clean batch and the sampling key are not used.
  contrastive = _symmetric_infonce(model, params, views, cfg)
  return contrastive, dict(infonce=contrastive)


def _infonce_x(model, params, x, key, cfg, views=()) -> LossAndTerms:
  """InfoNCE on the views plus -log p(x|z), z ~ q(z|x) of the clean x; gradients reach the encoder."""
  contrastive = _symmetric_infonce(model, params, views, cfg)
  _, log_px = _reconstruct(model, params, x, key)
  reconstruction = -jnp.mean(log_px)
  return (reconstruction + infonce_weight(cfg) * contrastive,
          dict(reconstruction=reconstruction, infonce=contrastive))


register(Method("mim", _mim))
register(Method("cmim", _make_cmim("mean"), contrastive=True))
register(Method("cmim_sum", _make_cmim("sum"), contrastive=True))
register(Method("vae", _vae))
register(Method("cvae", _cvae, contrastive=True))
register(Method("infonce", _infonce, has_decoder=False, num_views=2, uses_projection=True))
register(Method("infonce_x", _infonce_x, num_views=2, uses_projection=True))
