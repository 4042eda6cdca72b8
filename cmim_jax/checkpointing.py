"""Orbax checkpoints of the train state, with the run's config saved beside each one.

Orbax writes each step to a temporary folder and renames it into place when complete, so an
interrupted save never replaces or corrupts the last complete checkpoint.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers


class Checkpointer:
  """Saves and restores `{state, config}` under `directory`, keeping the newest `max_to_keep`."""

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.LatestN(max_to_keep),
            cleanup_tmp_directories=True),
        item_names=("state", "config"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps that have a complete checkpoint, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict())))

  def restore_state(self, abstract_state: Any = None, step: int | None = None) -> Any:
    """Restores the state at `step` (default: latest) into the structure and shardings of
    `abstract_state` (a pytree of `jax.ShapeDtypeStruct`, e.g. from `jax.eval_shape`); without
    one, as saved (nested dicts of arrays)."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored["state"]

  def restore_partial_state(self, abstract_subtree: Any, step: int | None = None) -> Any:
    """Restores only the leaves of the saved state named in `abstract_subtree`.

    E.g. `{"params": abstract_params}` reads the parameters without the optimiser state, so a
    reader (embedding extraction) needs neither the optimiser nor the device count of training:
    the leaves get the shardings of `abstract_subtree`.
    """
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract_subtree,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_subtree),
        partial_restore=True)))
    return restored["state"]

  def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return ml_collections.ConfigDict(restored["config"])

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of arrays: the target of a restore."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
