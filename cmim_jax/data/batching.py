"""Device-resident batching: the data set lives on the devices; batches are gathered there.

Every epoch draws a permutation with `jax.random` from (seed, epoch); batch `i` of the epoch is the
slice [i*B, (i+1)*B) of it, gathered on the devices and sharded over the mesh's batch axis. The
batch for a given step depends on nothing else, so a resumed run sees exactly the same batches.
The last partial batch of an epoch is dropped.

The gather is a pure function of (arrays, permutation, step) that the training loop traces into its
jitted step (`DeviceBatcher.batch_at`), so a step costs one dispatch and no host-to-device copy;
`DeviceBatcher.batch` runs the same function eagerly.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cmim_jax import sharding as sharding_lib
from cmim_jax.errors import ConfigError

Arrays = dict[str, jax.Array]


def check_batch_fits(batch_size: int, num_examples: int) -> None:
  """Raises a ConfigError unless one batch of `batch_size` fits in `num_examples` rows."""
  if batch_size > num_examples:
    raise ConfigError(f"data.batch_size={batch_size} exceeds the {num_examples} training "
                      "examples; lower data.batch_size.")


class DeviceBatcher:
  """Serves shuffled, batch-sharded batches of arrays that stay on the devices.

  Args:
    arrays: name -> host array [N, ...]; all with the same N. Placed replicated on the mesh.
    batch_size: global batch size B; a multiple of the device count and at most N.
    mesh: the device mesh.
    seed: seeds the per-epoch permutations.

  Attributes:
    arrays: name -> the device-resident array [N, ...] (replicated); pass it to `batch_at`.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, mesh: Mesh, seed: int):
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"All arrays must have the same number of rows, got {sizes}.")
    self.num_examples = next(iter(sizes.values()))
    sharding_lib.check_batch_size(batch_size, mesh)
    check_batch_fits(batch_size, self.num_examples)
    self.batch_size = batch_size
    self.steps_per_epoch = self.num_examples // batch_size
    self.arrays = {name: sharding_lib.put_replicated(a, mesh) for name, a in arrays.items()}
    self._key = jax.random.key(seed)
    self._mesh = mesh
    self._permutation_of_step = jax.jit(self._epoch_permutation,
                                        out_shardings=sharding_lib.replicated(mesh))
    self._batch_at = jax.jit(self.batch_at, out_shardings=(sharding_lib.batch_sharded(mesh),
                                                           sharding_lib.replicated(mesh)))
    self._cached = (None, None)  # (epoch, permutation) of the last eager `batch` call.

  def _epoch_permutation(self, step: jax.Array) -> jax.Array:
    epoch = step // self.steps_per_epoch
    return jax.random.permutation(jax.random.fold_in(self._key, epoch), self.num_examples)

  def permutation(self, step: int) -> jax.Array:
    """The permutation int32 [N] of the epoch that contains step `step` (replicated)."""
    return self._permutation_of_step(np.int32(step))

  def batch_at(self, arrays: Arrays, permutation: jax.Array,
               step: jax.Array) -> tuple[Arrays, jax.Array]:
    """Pure, jit-traced: the batch of step `step` and the permutation of its epoch.

    Args:
      arrays: `self.arrays`.
      permutation: int32 [N], the permutation of the epoch of step `step`, or of the epoch before
        when `step` begins a new epoch (it is then redrawn here).
      step: int scalar, the global step (0-based).

    Returns:
      (name -> [B, ...] sharded over `data`, the permutation of step `step`'s epoch).
    """
    index = step % self.steps_per_epoch
    permutation = jax.lax.cond(index == 0, self._epoch_permutation, lambda _: permutation, step)
    rows = jax.lax.dynamic_slice_in_dim(permutation, index * self.batch_size, self.batch_size)
    batch = {name: jnp.take(array, rows, axis=0) for name, array in arrays.items()}
    return (jax.lax.with_sharding_constraint(batch, sharding_lib.batch_sharded(self._mesh)),
            permutation)

  def batch(self, step: int) -> Arrays:
    """The batch of global step `step` (0-based): name -> [B, ...], sharded over `data`."""
    epoch = step // self.steps_per_epoch
    if self._cached[0] != epoch:
      self._cached = (epoch, self.permutation(step))
    batch, _ = self._batch_at(self.arrays, self._cached[1], np.int32(step))
    return batch
