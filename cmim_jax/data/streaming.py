"""Streaming input: a Grain pipeline that reads each process's rows of every global batch.

For data sets too large to place on the devices (`data.pipeline="stream"`). The global batch of
step s is a pure function of (seed, N, B, s), whatever the process or device count:

  epoch e = s // (N // B);  global batch = order[e * N + (s % (N // B)) * B + r],  r in [0, B)

where `order` is Grain's index shuffle of [0, N) under `seed` (a new permutation each epoch; the
last partial batch of an epoch is dropped, as in `batching.DeviceBatcher`). Each process reads
only the rows its own devices hold (`process_rows`), through a Grain `MapDataset` over steps whose
iterator prefetches with threads and whose state (the next step) Orbax saves beside the train
state (`grain.checkpoint.CheckpointSave`), so a resumed run reads exactly the batches it would
have read. The global batch array is assembled with `jax.make_array_from_process_local_data`, so
no host ever holds more than its share of a batch.
"""

from __future__ import annotations

from typing import Mapping, Protocol

import grain
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from cmim_jax import sharding as sharding_lib
from cmim_jax.data import batching


class RowSource(Protocol):
  """Random access to the rows of a data set: `len` and `read(rows) -> name -> [len(rows), ...]`."""

  def __len__(self) -> int:
    ...

  def read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    ...


class ArraySource:
  """A `RowSource` over host arrays name -> [N, ...] (e.g. a task's `train_arrays`)."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self._arrays = dict(arrays)
    self._num_rows = len(next(iter(self._arrays.values())))

  def __len__(self) -> int:
    return self._num_rows

  def read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.asarray(array[rows]) for name, array in self._arrays.items()}


def process_rows(sharding: NamedSharding, batch_size: int) -> np.ndarray:
  """The rows int64 [b] of a global batch [B, ...] that this process's devices hold, in the order
  `jax.make_array_from_process_local_data` expects them (ascending)."""
  starts = {index[0].indices(batch_size)[:2]
            for index in sharding.addressable_devices_indices_map((batch_size,)).values()}
  return np.concatenate([np.arange(start, stop) for start, stop in sorted(starts)])


class StreamBatcher:
  """Serves the global batches of steps [0, num_steps), each process reading only its rows.

  Args:
    source: the training rows, e.g. `ArraySource(task.train_arrays)` or a token file's source.
    batch_size: global batch size B; a multiple of the device count and at most N.
    mesh: the device mesh (all processes).
    seed: seeds the shuffle.
    num_steps: the steps of the run (the length of the step dataset).
    num_threads: Grain reader threads; prefetch: batches read ahead.
  """

  def __init__(self, source: RowSource, batch_size: int, mesh: Mesh, seed: int, num_steps: int,
               num_threads: int = 2, prefetch: int = 4):
    sharding_lib.check_batch_size(batch_size, mesh)
    self.num_examples = len(source)
    batching.check_batch_fits(batch_size, self.num_examples)
    self.batch_size = batch_size
    self.steps_per_epoch = self.num_examples // batch_size
    self.sharding = sharding_lib.batch_sharded(mesh)
    self._source = source
    self._local_rows = process_rows(self.sharding, batch_size)
    self._order = grain.MapDataset.range(self.num_examples).shuffle(seed=seed)
    self.dataset = grain.MapDataset.range(num_steps).map(self.local_batch)
    self._read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)

  def global_rows(self, step: int) -> np.ndarray:
    """The example indices int64 [B] of the global batch of step `step`."""
    epoch, index = divmod(int(step), self.steps_per_epoch)
    first = epoch * self.num_examples + index * self.batch_size
    return np.array([self._order[first + r] for r in range(self.batch_size)], np.int64)

  def local_batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of step `step`'s batch: name -> [b, ...] (b = B / process count)."""
    return self._source.read(self.global_rows(step)[self._local_rows])

  def iterator(self) -> grain.DatasetIterator:
    """A prefetching iterator over the local batches from step 0; `set_state` (or an Orbax restore
    with `grain.checkpoint.CheckpointRestore`) moves it to a saved position."""
    return iter(self.dataset.to_iter_dataset(self._read_options))

  def to_global(self, local: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """The global batch name -> [B, ...], sharded over `data`, from every process's local rows."""
    return {name: jax.make_array_from_process_local_data(
        self.sharding, array, (self.batch_size, *array.shape[1:])) for name, array in local.items()}

  def batch(self, step: int) -> dict[str, jax.Array]:
    """The global batch of step `step` (read directly, without the iterator)."""
    return self.to_global(self.local_batch(step))
