"""The device mesh (one `data` axis over all devices) and the shardings derived from it."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cmim_jax.errors import ConfigError

DATA_AXIS = "data"


def make_data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process) with axis `data`."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding for parameters, optimiser state and other values every device holds whole."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding for batches: split along the leading (batch) axis over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def batch_size_problem(batch_size: int, num_devices: int, what: str = "data.batch_size"
                       ) -> str | None:
  """What to change when `batch_size` does not split evenly over `num_devices`; else None."""
  if batch_size > 0 and batch_size % num_devices == 0:
    return None
  return (f"{what}={batch_size} must be a positive multiple of the device count ({num_devices}) "
          f"so each device gets the same share. Use e.g. {what}="
          f"{max(1, round(batch_size / num_devices)) * num_devices}.")


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "data.batch_size") -> None:
  """Raises a ConfigError that says what to change when `batch_size` does not split evenly."""
  problem = batch_size_problem(batch_size, mesh.devices.size, what)
  if problem:
    raise ConfigError(problem)


def put_replicated(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """Places a host array, identical on every process, whole on every device of the mesh.

  Works multi-host too: each process supplies the shards of its own devices.
  """
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, replicated(mesh), lambda index: array[index])
