"""The device mesh (one `data` axis over all devices) and the shardings derived from it."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

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


def local_copy(tree, mesh: Mesh):
  """A pytree of replicated global arrays copied onto `mesh` (e.g. this process's devices), so a
  computation of one process alone can use them."""
  return jax.tree.map(lambda a: jax.device_put(a.addressable_data(0), replicated(mesh)), tree)


def within_mesh(fn: Callable, mesh: Mesh) -> Callable:
  """`fn` traced with `mesh` as the context mesh, for `jax.jit`: `over_data_axis` inside finds it."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)
  return wrapped


def over_data_axis(fn: Callable, *rows: jax.Array, out_specs=P(DATA_AXIS)):
  """fn(*rows) with each device holding its rows, when the context mesh splits `data`.

  Under a context mesh (see `within_mesh`) whose `data` axis has several devices, runs
  `fn(*row_shards, axis_name="data")` per device through `jax.shard_map`: each argument [B, ...]
  is split on its leading axis, and `fn` combines the devices with collectives on that axis
  (e.g. the contrastive terms of `cmim_jax.losses` all-gather the latents). Otherwise (no mesh,
  or one device) it is `fn(*rows)`.

  Args:
    fn: takes the row arrays and the keyword `axis_name`.
    *rows: arrays [B, ...] with B a multiple of the device count.
    out_specs: how `fn`'s outputs are laid out: P("data") for per-row outputs [B, ...], P() for
      values the same on every device (e.g. a mean over all rows).

  Returns:
    fn's outputs for the whole batch.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.shape.get(DATA_AXIS, 1) == 1:
    return fn(*rows)
  return jax.shard_map(functools.partial(fn, axis_name=DATA_AXIS), mesh=mesh,
                       in_specs=(P(DATA_AXIS),) * len(rows), out_specs=out_specs)(*rows)
