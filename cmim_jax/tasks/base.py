"""The interface every task implements."""

from __future__ import annotations

import abc
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh


class Task(abc.ABC):
  """Data and evaluation of one modality.

  Attributes:
    source: which data source served the data (logged and written to the summary).
    train_arrays: name -> host array [N, ...] that the train step's batches are gathered from.
    example_input: a model input [2, ...] (after `preprocess`) used to initialise parameters.
  """

  source: str
  train_arrays: Mapping[str, np.ndarray]
  example_input: np.ndarray

  @abc.abstractmethod
  def build_model(self, model_config) -> Any:
    """The Flax auto-encoder for this task's inputs."""

  @abc.abstractmethod
  def preprocess(self, batch: Mapping[str, jax.Array], key: jax.Array) -> jax.Array:
    """Pure, jit-traced: a gathered batch -> model inputs x [B, ...]."""

  @abc.abstractmethod
  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """End-of-run metrics on held-out data (written to summary.json)."""
