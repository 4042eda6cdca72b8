"""`run_keyed`: a jitted fn(params, batch, key) over the rows of a host array, batch by batch."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from cmim_jax import sharding as sharding_lib


def run_keyed(fn, mesh: Mesh, params, inputs: np.ndarray, key: jax.Array, batch_size: int):
  """Applies `fn(params, batch, key_i)` (jit it with `keyed_jit`) to `inputs` [N, ...] in batches of a
  multiple of the device count, sharded over `mesh`; batch i gets `fold_in(key, i)`. The last
  batch is padded with copies of its first row (valid model inputs), which are dropped.

  Returns:
    `fn`'s output pytree with leaves [N, ...] as host arrays.
  """
  num_devices = mesh.devices.size
  batch_size = max(num_devices, batch_size // num_devices * num_devices)
  rows = sharding_lib.batch_sharded(mesh)
  chunks = []
  for index, start in enumerate(range(0, len(inputs), batch_size)):
    batch = np.asarray(inputs[start:start + batch_size])
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.repeat(batch[:1], batch_size - valid, axis=0)])
    out = jax.device_get(fn(params, jax.device_put(batch, rows), jax.random.fold_in(key, index)))
    chunks.append(jax.tree.map(lambda v, valid=valid: np.asarray(v)[:valid], out))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves), *chunks)


def keyed_jit(fn, mesh: Mesh):
  """jit of fn(params, batch, key): parameters and key replicated, the batch split over `mesh`."""
  replicated = sharding_lib.replicated(mesh)
  return jax.jit(fn, in_shardings=(replicated, sharding_lib.batch_sharded(mesh), replicated),
                 out_shardings=replicated)
