"""Embeddings from any checkpoint: restore a trained model, embed arrays or a task's splits.

No training code runs: the model is rebuilt from the config saved with the checkpoint and only its
parameters are read. See `cmim_jax.embedding.compute` for what the mean and informative embeddings
are and `cmim_jax.embedding.files` for the file layout.

Python use, without files:
  trained = load_trained("/tmp/cmim_mnist")        # latest checkpoint and its saved config
  vectors = embed_arrays(trained, inputs)           # {"mean": [N, D], "informative": [N, H]}
  arrays = embed_split(trained, "test")             # + labels or targets, split_*, step
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from cmim_jax import checkpointing, errors, objectives, tasks
from cmim_jax import sharding as sharding_lib
from cmim_jax.data import mnist
from cmim_jax.embedding import compute, files


@dataclasses.dataclass(frozen=True)
class Trained:
  """A restored model, ready to embed.

  Attributes:
    config: the config saved with the checkpoint (with any data overrides applied).
    task: the task built from `config` (serves the inputs of each split).
    model: the Flax auto-encoder.
    params: its parameters, replicated over `mesh`.
    step: the checkpoint step.
    has_decoder: whether the method trained a decoder, i.e. has informative embeddings.
    mesh: the device mesh the parameters live on.
  """

  config: ml_collections.ConfigDict
  task: tasks.Task
  model: Any
  params: Any
  step: int
  has_decoder: bool
  mesh: Mesh


def abstract_params(model, example_input: np.ndarray, mesh: Mesh) -> Any:
  """Shapes and dtypes of `model`'s parameters (no allocation), replicated over `mesh`."""
  key = jax.random.key(0)
  shapes = jax.eval_shape(lambda k: model.init(k, example_input, k)["params"], key)
  sharding = sharding_lib.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def _find_moved_assets(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """Points `data.vocab_path` at the workdir's own vocab.json when the saved absolute path is gone
  (the run folder was moved or copied since training)."""
  saved = config.data.get("vocab_path")
  if saved and not pathlib.Path(saved).exists() and (workdir / "vocab.json").exists():
    config.data.vocab_path = str(workdir / "vocab.json")


def load_trained(workdir: str | pathlib.Path, step: int | None = None,
                 data_name: str | None = None, data_dir: str | None = None,
                 devices: Sequence[jax.Device] | None = None,
                 data_overrides: Mapping[str, Any] | None = None) -> Trained:
  """Restores the parameters of the checkpoint at `step` (default: latest) in `workdir`.

  The model is rebuilt from the config saved with that checkpoint; no training code runs and the
  optimiser state is not read. `data_name` / `data_dir` override `config.data.name` /
  `config.data.data_dir`, to embed another registered task or read the data from elsewhere;
  `data_overrides` sets further `config.data` fields (e.g. a labelled CSV's `csv_path`).
  """
  checkpoint_dir = pathlib.Path(workdir) / "checkpoints"
  no_checkpoint = errors.MissingInputError(
      f"No checkpoint in {checkpoint_dir}; train first with `python -m experiments.main "
      f"--config=... --workdir={workdir}`, or pass the workdir of a trained run.")
  if not checkpoint_dir.is_dir() or not any(p.name.isdigit() for p in checkpoint_dir.iterdir()):
    raise no_checkpoint
  checkpointer = checkpointing.Checkpointer(checkpoint_dir, read_only=True)
  try:
    if not checkpointer.all_steps():
      raise no_checkpoint
    if step is None:
      step = checkpointer.latest_step()
    config = checkpointer.restore_config(step)
    _find_moved_assets(config, pathlib.Path(workdir))
    if data_name:
      config.data.name = data_name
    if data_dir:
      config.data.data_dir = data_dir
    for key, value in (data_overrides or {}).items():
      config.data[key] = value
    method = objectives.get_method(config.loss.method)
    with mnist.brief_fallback_notice():
      task = tasks.build_task(config)
    model = method.build_model(task, config)
    mesh = sharding_lib.make_data_mesh(devices)
    target = {"params": abstract_params(model, task.example_input, mesh)}
    try:
      params = checkpointer.restore_partial_state(target, step)["params"]
    except ValueError as error:
      raise errors.ConfigError(
          f"The parameters in {checkpoint_dir} (step {step}) do not fit the model built for "
          f"data.name={config.data.name!r}; embed a data set whose inputs the model was built "
          f"for. Orbax said: {error}") from error
  finally:
    checkpointer.close()
  return Trained(config=config, task=task, model=model, params=params, step=step,
                 has_decoder=method.has_decoder, mesh=mesh)


def embed_arrays(trained: Trained, inputs: np.ndarray,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
  """Embeds preprocessed inputs [N, ...]: {"mean": [N, D], "informative": [N, H]}.

  `informative` is left out when the method has no decoder. `batch_size` defaults to
  `config.eval.batch_size`. Inputs of another shape than the model was trained on are a DataError.
  """
  expected = tuple(trained.task.example_input.shape[1:])
  if tuple(np.shape(inputs)[1:]) != expected:
    raise errors.DataError(
        f"Inputs of shape {tuple(np.shape(inputs))} do not fit the model in this checkpoint, "
        f"trained on inputs [N, {', '.join(map(str, expected))}]; resize or convert them first "
        "(images: pixels in [0, 1], [N, H, W, C]).")
  batch_size = trained.config.eval.batch_size if batch_size is None else batch_size
  outputs = compute.embed_inputs(trained.model, trained.params, inputs, trained.mesh, batch_size)
  return {k: outputs[k] for k in files.EMBEDDING_KEYS if k in outputs}


def _check_splits(trained: Trained, splits: Sequence[str]) -> None:
  unknown = [s for s in splits if s not in trained.task.embedding_splits]
  if unknown:
    raise errors.ConfigError(
        f"Unknown split(s) {unknown} for data.name={trained.config.data.name!r}; "
        f"choose from {list(trained.task.embedding_splits)}.")


def embed_split(trained: Trained, split: str, batch_size: int | None = None,
                with_raw: bool = True) -> dict[str, np.ndarray]:
  """The contents of one embedding file (see `cmim_jax.embedding.files`) for the task's `split`:
  the embeddings, "raw" (the flattened inputs, the probes' raw-input baseline) when `with_raw` and
  the task's inputs are features, annotations, and the data's source and checksum."""
  _check_splits(trained, [split])
  inputs, annotations = trained.task.embedding_inputs(split)
  raw = ({"raw": np.asarray(inputs, np.float32).reshape(len(inputs), -1)}
         if with_raw and trained.task.raw_inputs_are_features else {})
  provenance = {files.DATA_SOURCE: np.str_(trained.task.source),
                files.DATA_SHA256: np.str_(files.data_checksum(
                    {"inputs": inputs, **annotations}))}
  return dict(embed_arrays(trained, inputs, batch_size), **raw, **annotations, **provenance,
              step=np.int64(trained.step), data_name=np.str_(trained.config.data.name),
              method=np.str_(trained.config.loss.method))


def write_embeddings(trained: Trained, out_dir: str | pathlib.Path,
                     splits: Sequence[str] | None = None,
                     batch_size: int | None = None,
                     with_raw: bool = True) -> dict[str, pathlib.Path]:
  """Embeds each split (default: all the task serves) into `out_dir/<split>.npz`; `with_raw`
  as in `embed_split` (the raw inputs are 188 MB for MNIST's training split).

  Returns split -> path. Only the first process writes (the others compute their shards alike).
  """
  splits = tuple(splits or trained.task.embedding_splits)
  _check_splits(trained, splits)
  paths = {}
  for number, split in enumerate(splits, start=1):
    start = time.perf_counter()
    arrays = embed_split(trained, split, batch_size, with_raw)
    path = pathlib.Path(out_dir) / f"{split}.npz"
    if jax.process_index() == 0:
      files.save_npz(path, arrays)
    paths[split] = path
    logging.info("Embedded split %d/%d (%s, %d examples) in %.1f s -> %s", number, len(splits),
                 split, len(arrays["mean"]), time.perf_counter() - start, path)
  return paths
