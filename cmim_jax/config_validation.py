"""Checks a training config before anything is created: every bad field in one error.

`validate(config, num_devices)` looks at the type and range of each field the training job reads
and raises one `ConfigError` that lists every problem with the override that fixes it, e.g.

  Invalid config (2 problems):
    train.num_steps=-5: must be an integer >= 1; e.g. --config.train.num_steps=10000
    loss.temperature=0.0: must be a finite number > 0; e.g. --config.loss.temperature=0.1
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import ml_collections

from cmim_jax import models, objectives, tasks
from cmim_jax import sharding as sharding_lib
from cmim_jax.data import augment, download, image_sources
from cmim_jax.errors import ConfigError
from cmim_jax.models import likelihoods, sequence
from cmim_jax.tasks.molecules import MOLECULE_TASK_BUILDERS

# Methods without a contrastive term; every other method compares each example with the others in
# its batch, so it needs at least 2 examples per batch.
NON_CONTRASTIVE_METHODS = ("mim", "vae")
_SEQUENCE_DATA = tuple(MOLECULE_TASK_BUILDERS)
# Input pipelines (`data.pipeline`): device-resident batching, or per-host streaming with Grain.
PIPELINES = ("device", "stream")
# The largest seed: JAX keys (without x64) keep 32 bits, so larger seeds would silently collide,
# and the tasks derive seed + 1.
MAX_SEED = 2**31 - 1


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: _is_int(v) and v >= low), f"must be an integer >= {low}"


def _positive_finite() -> tuple[Callable[[Any], bool], str]:
  return (lambda v: _is_number(v) and math.isfinite(v) and v > 0), "must be a finite number > 0"


def _finite_at_least(low: float) -> tuple[Callable[[Any], bool], str]:
  return ((lambda v: _is_number(v) and math.isfinite(v) and v >= low),
          f"must be a finite number >= {low}")


def _one_of(choices) -> tuple[Callable[[Any], bool], str]:
  choices = sorted(choices)
  return (lambda v: v in choices), f"must be one of {choices}"


class _Checker:
  """Collects problems as 'field=value: requirement; e.g. --config.field=example'."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.problems: list[str] = []

  def value(self, field: str):
    node = self.config
    for part in field.split("."):
      if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
        return _MISSING
      node = node[part]
    return node

  def add(self, field: str, requirement: str, example: Any = None) -> None:
    value = self.value(field)
    shown = "missing" if value is _MISSING else repr(value)
    fix = "" if example is None else f"; e.g. --config.{field}={example}"
    self.problems.append(f"{field}={shown}: {requirement}{fix}")

  def check(self, field: str, rule: tuple[Callable[[Any], bool], str], example: Any,
            optional: bool = False) -> bool:
    """Adds a problem unless `field` passes `rule`; an absent `optional` field passes."""
    value = self.value(field)
    if value is _MISSING and optional:
      return True
    predicate, requirement = rule
    if value is _MISSING or not predicate(value):
      self.add(field, requirement, example)
      return False
    return True


_MISSING = object()


def _check_model(c: _Checker, sequence_data: bool) -> None:
  c.check("model.latent_dim", _int_at_least(1), 16)
  c.check("model.dtype", _one_of(("float32", "bfloat16")), "float32", optional=True)
  if sequence_data:
    c.check("model.encoder", _one_of(sequence.SEQUENCE_ENCODERS), sequence.SEQUENCE_ENCODERS[0])
    decoder = c.value("model.decoder")
    if decoder:
      c.check("model.decoder", _one_of(sequence.SEQUENCE_DECODERS),
              sequence.SEQUENCE_DECODERS[0])
    for field in ("num_latents", "width", "num_heads", "encoder_layers", "decoder_layers",
                  "mlp_ratio"):
      c.check(f"model.{field}", _int_at_least(1), 2, optional=True)
    width, heads = c.value("model.width"), c.value("model.num_heads")
    if _is_int(width) and _is_int(heads) and heads >= 1 and width % heads:
      c.add("model.width", f"must be a multiple of model.num_heads={heads}", heads * 32)
  else:
    c.check("model.encoder", _one_of(models.ENCODERS), "mlp")
    if c.value("model.decoder"):
      c.check("model.decoder", _one_of(models.DECODERS), "mlp")
    sizes = c.value("model.hidden_sizes")
    if sizes is not _MISSING and not (sizes and all(_is_int(s) and s >= 1 for s in sizes)):
      c.add("model.hidden_sizes", "must be one or more integers >= 1", "'(512,512)'")
    features = c.value("model.conv_features")
    if features is not _MISSING and not (features and all(_is_int(s) and s >= 1
                                                          for s in features)):
      c.add("model.conv_features", "must be one or more integers >= 1", "'(32,64)'")
    c.check("model.conv_dense_size", _int_at_least(1), 256, optional=True)
    for field in ("patch_size", "width", "num_heads", "mlp_ratio", "num_latents",
                  "encoder_layers", "decoder_memory_tokens", "decoder_layers"):
      c.check(f"model.perceiver.{field}", _int_at_least(1), 4, optional=True)
  low, high = c.value("model.logvar_min"), c.value("model.logvar_max")
  if _is_number(low) and _is_number(high) and not low < high:
    c.add("model.logvar_min", f"must be below model.logvar_max={high}", high - 12)


def _check_data(c: _Checker, method_name: Any, num_devices: int | None) -> None:
  data_name = c.value("data.name")
  c.check("data.name", _one_of(tasks.TASK_BUILDERS), "mnist")
  min_batch = 1 if method_name in NON_CONTRASTIVE_METHODS else 2
  requirement = (f"must be an integer >= {min_batch}" +
                 ("" if min_batch == 1 else f" (loss.method={method_name!r} contrasts each "
                  "example with the others in its batch)"))
  batch = c.value("data.batch_size")
  if not (_is_int(batch) and batch >= min_batch):
    c.add("data.batch_size", requirement, 128)
  elif num_devices and sharding_lib.batch_size_problem(batch, num_devices):
    c.problems.append(sharding_lib.batch_size_problem(batch, num_devices))
  if data_name in _SEQUENCE_DATA:
    c.check("data.max_length", _int_at_least(0), 56, optional=True)
    c.check("data.num_test_molecules", _int_at_least(1), 2000, optional=True)
    c.check("data.max_train_molecules", _int_at_least(0), 0, optional=True)
  elif data_name == "toy2d":
    c.check("data.num_points", _int_at_least(2), 1000, optional=True)
    c.check("data.distribution", _one_of(("uniform", "gaussian")), "uniform", optional=True)
  elif data_name in image_sources.LOADERS:
    _check_image_source(c, data_name)
  else:
    c.check("data.source", _one_of(("auto", "tfds")), "auto", optional=True)
  c.check("data.download_timeout", _positive_finite(), 30, optional=True)
  mirrors = c.value("data.mirrors")
  if mirrors is not _MISSING and mirrors:
    problems = [download.url_problem(m) if isinstance(m, str) else f"{m!r} is not a URL"
                for m in mirrors]
    if any(problems):
      c.add("data.mirrors", "; ".join(filter(None, problems)), "'(\"https://HOST/PATH/\",)'")
  c.check("data.pipeline", _one_of(PIPELINES), "device", optional=True)
  c.check("data.reader_threads", _int_at_least(0), 2, optional=True)
  c.check("data.prefetch_batches", _int_at_least(0), 4, optional=True)


def _check_image_source(c: _Checker, data_name: str) -> None:
  """Fields of your own images (`cmim_jax.data.image_sources`)."""
  if data_name == "tfds":
    c.check("data.tfds_name", ((lambda v: isinstance(v, str) and v), "must name a TFDS data set"),
            "cifar10")
  elif not (isinstance(c.value("data.data_dir"), str) and c.value("data.data_dir")):
    c.add("data.data_dir", f"must be the {'.npz archive' if data_name == 'npz' else 'folder'} "
          "to read", "/path/to/" + ("images.npz" if data_name == "npz" else "images"))
  c.check("data.image_size", _int_at_least(0), 28, optional=True)
  c.check("data.channels", _one_of((0, 1, 3)), 1, optional=True)
  c.check("data.test_fraction", ((lambda v: _is_number(v) and 0 < v < 1),
                                 "must be a number in (0, 1)"), 0.2, optional=True)
  c.check("data.val_fraction", ((lambda v: _is_number(v) and 0 <= v < 1),
                                "must be a number in [0, 1)"), 0.1, optional=True)


def _check_likelihood(c: _Checker) -> None:
  name = c.value("model.likelihood")
  if name is _MISSING or name == "auto":
    return
  if c.check("model.likelihood", _one_of(("auto", *likelihoods.PIXEL_LIKELIHOODS)), "auto"):
    if likelihoods.PIXEL_LIKELIHOODS[name].discrete and c.value("data.binarize") is True:
      c.add("model.likelihood", "scores 8-bit intensities, but data.binarize=True makes the "
            "pixels 0 or 1; set --config.data.binarize=False or", "bernoulli")


def validate(config: ml_collections.ConfigDict, num_devices: int | None = None) -> None:
  """Raises one ConfigError listing every invalid field of a training config, with its fix.

  Args:
    config: a training config (e.g. `experiments/configs/mnist.py`).
    num_devices: the size of the device mesh; the global batch must divide by it. None skips
      that check.
  """
  c = _Checker(config)
  c.check("seed", (lambda v: _is_int(v) and 0 <= v <= MAX_SEED,
                   f"must be an integer in [0, {MAX_SEED}]"), 0)
  method_name = c.value("loss.method")
  c.check("loss.method", _one_of(objectives.METHODS), "cmim")
  c.check("loss.temperature", _positive_finite(), 0.1)
  c.check("loss.infonce_temperature", _positive_finite(), 0.1, optional=True)
  c.check("loss.contrastive_weight", _finite_at_least(0), 1.0, optional=True)
  c.check("loss.infonce_weight", _finite_at_least(0), 100.0, optional=True)
  c.check("loss.contrastive_anchor", _one_of(objectives.ANCHORS), "mu", optional=True)
  c.check("loss.contrastive_positive", _one_of(objectives.POSITIVES), "z", optional=True)
  c.check("loss.block_size", _int_at_least(0), 0, optional=True)
  c.check("loss.projection_hidden", _int_at_least(1), 128, optional=True)
  c.check("loss.projection_dim", _int_at_least(1), 64, optional=True)
  _check_data(c, method_name, num_devices)
  _check_model(c, c.value("data.name") in _SEQUENCE_DATA)
  _check_likelihood(c)
  c.check("train.num_steps", _int_at_least(1), 10000)
  c.check("train.learning_rate", _positive_finite(), 0.001)
  c.check("train.grad_clip_norm", _positive_finite(), 1000.0, optional=True)
  c.check("train.log_every_steps", _int_at_least(1), 100)
  c.check("train.steps_per_dispatch", _int_at_least(1), 1, optional=True)
  c.check("checkpoint.every_steps", _int_at_least(1), 1000)
  c.check("checkpoint.max_to_keep", _int_at_least(1), 3)
  c.check("eval.batch_size", _int_at_least(1), 1000)
  c.check("eval.knn_k", _int_at_least(1), 5, optional=True)
  c.check("eval.max_examples", _int_at_least(0), 0, optional=True)
  c.check("eval.num_molecules", _int_at_least(1), 500, optional=True)
  c.check("eval.num_prior_samples", _int_at_least(0), 500, optional=True)
  c.check("eval.likelihood_samples", _int_at_least(0), 10, optional=True)
  c.check("eval.likelihood_examples", _int_at_least(0), 1000, optional=True)
  c.check("eval.likelihood_chunk", _int_at_least(0), 0, optional=True)
  if isinstance(c.value("augment"), ml_collections.ConfigDict):
    try:
      augment.AugmentConfig.from_config(config.augment)
    except (ValueError, TypeError) as e:
      c.problems.append(str(e))
  if c.problems:
    raise ConfigError(f"Invalid config ({len(c.problems)} problem"
                      f"{'s' if len(c.problems) > 1 else ''}):\n  " + "\n  ".join(c.problems))
