"""The interface every task implements."""

from __future__ import annotations

import abc
import pathlib
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh

from cmim_jax.data import streaming


class Task(abc.ABC):
  """Data and evaluation of one modality.

  Attributes:
    source: which data source served the data (logged and written to the summary).
    train_arrays: name -> host array [N, ...] that the train step's batches are gathered from
      (`data.pipeline="device"`).
    example_input: a model input [2, ...] (after `preprocess`) used to initialise parameters.
    input_rows: for the summary, counts of the input rows read, kept and skipped per cause
      (empty when the task skips none).
    raw_inputs_are_features: whether the flattened `embedding_inputs` are meaningful features
      (pixels: yes; token ids: no); then the embedding files carry them as "raw", the probes'
      raw-input baseline.
  """

  source: str
  train_arrays: Mapping[str, np.ndarray]
  example_input: np.ndarray
  input_rows: Mapping[str, Any] = {}
  raw_inputs_are_features: bool = False

  def train_source(self) -> streaming.RowSource:
    """The training rows the streaming pipeline reads (`data.pipeline="stream"`); by default
    `train_arrays`. A task over a corpus too large for memory reads them from a file instead."""
    return streaming.ArraySource(self.train_arrays)

  @abc.abstractmethod
  def build_model(self, model_config) -> Any:
    """The Flax auto-encoder for this task's inputs."""

  @abc.abstractmethod
  def preprocess(self, batch: Mapping[str, jax.Array], key: jax.Array) -> jax.Array:
    """Pure, jit-traced: a gathered batch -> model inputs x [B, ...]."""

  def views(self, batch: Mapping[str, jax.Array], key: jax.Array,
            num_views: int) -> tuple[jax.Array, ...]:
    """Pure, jit-traced: `num_views` independently augmented model inputs [B, ...] of the batch.

    The positive pairs of the methods with `Method.num_views > 0` (InfoNCE). A task without data
    augmentations serves only methods that need no views.
    """
    del batch, key
    if num_views:
      raise NotImplementedError(
          f"{type(self).__name__} has no data augmentations, so it cannot make the {num_views} "
          "augmented views this loss.method needs; choose a method without views (e.g. cmim).")
    return ()

  def likelihood_inputs(self, split: str) -> np.ndarray:
    """Model inputs [N, ...] of `split` that the likelihood bound scores (`cmim_jax.generation`);
    by default those of `embedding_inputs`."""
    return self.embedding_inputs(split)[0]

  def likelihood_dimensions(self, inputs: np.ndarray) -> np.ndarray:
    """int [N]: the dimensions of each row of `inputs`, for bits per dimension; by default the
    number of elements of a row."""
    return np.full((len(inputs),), int(np.prod(inputs.shape[1:])), np.int64)

  @abc.abstractmethod
  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """End-of-run metrics on held-out data (written to summary.json)."""

  def save_assets(self, workdir: pathlib.Path, config):
    """Writes what rebuilding this task later needs (e.g. a vocabulary) into `workdir`; returns
    the config to save with the checkpoints, updated to find it. Default: nothing to write."""
    del workdir
    return config

  @property
  @abc.abstractmethod
  def embedding_splits(self) -> tuple[str, ...]:
    """Names of the splits `embedding_inputs` serves, e.g. ("train", "test") or ("all",)."""

  @abc.abstractmethod
  def embedding_inputs(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Deterministic model inputs of `split` and their annotations, for embedding and probing.

    Returns:
      inputs: host array [N, ...], already preprocessed (no randomness), ready for
        `cmim_jax.embedding.compute.embed_batch`.
      annotations: {"labels": int [N]} for classification or {"targets": float [N, T]} for
        regression; data sets without a fixed train/test split add any number of
        "split_<scheme>" int8 [N] arrays (0 = train, 1 = valid, 2 = test), e.g. "split_random0",
        "split_scaffold", and the probes average over the schemes.
    """
