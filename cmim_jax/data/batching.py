"""Device-resident batching: the data set lives on the devices; batches are gathered there.

Every epoch draws a permutation with `jax.random` from (seed, epoch); batch `i` of the epoch is the
slice [i*B, (i+1)*B) of it, gathered on the devices and sharded over the mesh's batch axis. The
batch for a given step depends on nothing else, so a resumed run sees exactly the same batches.
The last partial batch of an epoch is dropped.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cmim_jax import sharding as sharding_lib


def _gather_rows(arrays, permutation, index, *, batch_size):
  rows = jax.lax.dynamic_slice_in_dim(permutation, index * batch_size, batch_size)
  return {name: jnp.take(array, rows, axis=0) for name, array in arrays.items()}


class DeviceBatcher:
  """Serves shuffled, batch-sharded batches of arrays that stay on the devices.

  Args:
    arrays: name -> host array [N, ...]; all with the same N. Placed replicated on the mesh.
    batch_size: global batch size B; a multiple of the device count and at most N.
    mesh: the device mesh.
    seed: seeds the per-epoch permutations.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, mesh: Mesh, seed: int):
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"All arrays must have the same number of rows, got {sizes}.")
    self.num_examples = next(iter(sizes.values()))
    sharding_lib.check_batch_size(batch_size, mesh)
    if batch_size > self.num_examples:
      raise ValueError(
          f"data.batch_size={batch_size} exceeds the {self.num_examples} training examples; "
          "lower data.batch_size.")
    self.batch_size = batch_size
    self.steps_per_epoch = self.num_examples // batch_size
    self._arrays = {name: sharding_lib.put_replicated(a, mesh) for name, a in arrays.items()}
    self._key = jax.random.key(seed)
    self._permute = jax.jit(
        lambda key: jax.random.permutation(key, self.num_examples),
        out_shardings=sharding_lib.replicated(mesh))
    self._gather = jax.jit(functools.partial(_gather_rows, batch_size=batch_size),
                           out_shardings=sharding_lib.batch_sharded(mesh))
    self._epoch = None
    self._permutation = None

  def batch(self, step: int) -> dict[str, jax.Array]:
    """The batch of global step `step` (0-based): name -> [B, ...], sharded over `data`."""
    epoch, index = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._permutation = self._permute(jax.random.fold_in(self._key, epoch))
      self._epoch = epoch
    return self._gather(self._arrays, self._permutation, np.int32(index))
