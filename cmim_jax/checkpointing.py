"""Orbax checkpoints of the train state, with the run's config saved beside each one, verified.

A streaming run (`data.pipeline="stream"`) also saves its Grain iterator's position, one small
file per process (`grain.checkpoint`), so a resumed run reads the batches it would have read.
Every process calls `save`; Orbax writes each array once, coordinated by process 0.

Orbax writes each step to a temporary folder and renames it into place when complete, so an
interrupted save never replaces or corrupts the last complete checkpoint. As soon as a save is
complete (checked after every train dispatch, `finish_completed_saves`, and waited for at the end
of training, on SIGTERM/SIGINT and at `close`), the first process writes
`<step>/manifest.sha256.json` (atomically, last): the SHA-256 and size of every file of that step,
`{"files": {relative path: {"sha256": 64 hex digits, "size": bytes}}}`.

Before a step is restored its files are checked against its manifest: the manifest must have that
schema and list exactly the step's files (a missing, changed, extra or unlisted file makes the
step unverified). A step that fails, or that has no manifest while other steps have one (killed
between the save and its manifest, or still being written by a running trainer), is not used:
  * the training process (`read_only=False`, the one writer of the workdir) moves it aside into
    `<checkpoints>.damaged/` with a warning and resumes from the previous good step;
  * a reader (`read_only=True`: embedding, probes, paper scripts) changes nothing on disk: it
    warns, naming the step it skips and the step it uses instead.
Checkpoints written before manifests existed (no step has one) load with a warning.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import shutil
import time
from typing import Any

import jax
import ml_collections
import grain
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers

from cmim_jax import files
from cmim_jax.errors import CheckpointError

MANIFEST = "manifest.sha256.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Checkpointer:
  """Saves and restores `{state, config}` (and a streaming run's `data` iterator position) under
  `directory`, keeping the newest `max_to_keep`."""

  def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3,
               read_only: bool = False):
    """`read_only`: for readers (embedding, probes, paper scripts): neither Orbax nor this class
    creates, moves or deletes anything; steps that fail verification are skipped."""
    self.directory = pathlib.Path(directory).absolute()
    self.read_only = read_only
    options = (ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0, create=False)
               if read_only else
               ocp.CheckpointManagerOptions(
                   preservation_policy=checkpoint_managers.LatestN(max_to_keep),
                   cleanup_tmp_directories=True))
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "config", "data"))
    self._unmanifested: list[int] = []  # Saved here, manifest not written yet.
    self._verified: set[int] = set()
    self._unverifiable: set[int] = set()  # Steps written before manifests existed.
    self._skipped: set[int] = set()  # Steps a reader found unverified (left in place).

  @property
  def damaged_directory(self) -> pathlib.Path:
    """Where damaged checkpoints are moved: `<directory>.damaged/<step>-<time>`."""
    return self.directory.with_name(self.directory.name + ".damaged")

  def all_steps(self) -> list[int]:
    """The steps that have a complete checkpoint, oldest first (not verified yet; without those a
    reader skipped)."""
    return sorted(set(self._manager.all_steps()) - self._skipped)

  def latest_step(self) -> int | None:
    """The newest step whose files verify, or None. The writer moves damaged newer ones aside;
    a reader skips them with a warning naming the step it uses instead.

    Raises:
      CheckpointError: when there are checkpoints but none of them is good.
    """
    steps = self.all_steps()
    skipped = []
    for step in reversed(steps):
      if self._verify(step):
        if skipped:
          logging.warning("Using the checkpoint of step %d in %s instead of step(s) %s.", step,
                          self.directory, skipped)
        return step
      skipped.append(step)
    if steps:
      where = ("they were left in place" if self.read_only else
               f"they were moved to {self.damaged_directory}")
      raise CheckpointError(
          f"Every checkpoint in {self.directory} (steps {steps}) is damaged or unverified; "
          f"{where}. Delete {self.directory} to start the run over.")
    return None

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict,
           data_iterator: grain.DatasetIterator | None = None) -> None:
    """Starts an asynchronous save of `step` (and of `data_iterator`'s position, when given). Its
    manifest is written once the save is complete: by the first `finish_completed_saves` after
    that, or by `wait_until_finished` / `close`."""
    if self.read_only:
      raise CheckpointError(f"{self.directory} was opened read-only; it cannot be saved to.")
    self.wait_until_finished()
    items = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict()))
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self._manager.save(step, args=ocp.args.Composite(**items))
    self._unmanifested.append(step)

  def restore_state(self, abstract_state: Any = None, step: int | None = None) -> Any:
    """Restores the state at `step` (default: latest) into the structure and shardings of
    `abstract_state` (a pytree of `jax.ShapeDtypeStruct`, e.g. from `jax.eval_shape`); without
    one, as saved (nested dicts of arrays)."""
    return self._restore(step, ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))["state"]

  def restore_partial_state(self, abstract_subtree: Any, step: int | None = None) -> Any:
    """Restores only the leaves of the saved state named in `abstract_subtree`.

    E.g. `{"params": abstract_params}` reads the parameters without the optimiser state, so a
    reader (embedding extraction) needs neither the optimiser nor the device count of training:
    the leaves get the shardings of `abstract_subtree`.
    """
    return self._restore(step, ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=abstract_subtree,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_subtree),
        partial_restore=True)))["state"]

  def restore_data_iterator(self, iterator: grain.DatasetIterator, step: int) -> None:
    """Moves `iterator` to the position saved with `step` (this process's file)."""
    if not (self.directory / str(step) / "data").is_dir():
      raise CheckpointError(
          f"The checkpoint {self.directory / str(step)} has no data iterator state (it was "
          "written with data.pipeline='device'); resume it with that pipeline or use a new "
          "--workdir.")
    self._restore(step, ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iterator)))

  def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
    restored = self._restore(step, ocp.args.Composite(config=ocp.args.JsonRestore()))
    return ml_collections.ConfigDict(restored["config"])

  def _restore(self, step: int | None, args: ocp.args.Composite) -> Any:
    step = self._usable_step(step)
    try:
      return self._manager.restore(step, args=args)
    except (KeyError, OSError, ValueError) as e:
      if step not in self._unverifiable:
        raise
      raise CheckpointError(
          f"The checkpoint {self.directory / str(step)} (written without a manifest) cannot be "
          f"read ({type(e).__name__}: {e}); move it out of {self.directory} to use an older "
          "step.") from e

  def finish_completed_saves(self) -> None:
    """Writes the manifest of a pending save if it has completed; never waits."""
    if self._unmanifested and not self._manager.is_saving_in_progress():
      self.wait_until_finished()

  def wait_until_finished(self) -> None:
    """Waits for the pending save, then writes its manifest."""
    self._manager.wait_until_finished()
    for step in self._unmanifested:
      if jax.process_index() == 0 and (self.directory / str(step)).is_dir():
        write_manifest(self.directory / str(step))
      self._verified.add(step)
    self._unmanifested.clear()

  def close(self) -> None:
    self.wait_until_finished()
    self._manager.close()

  def _usable_step(self, step: int | None) -> int:
    """`step` (default: the latest good one) once verified; a CheckpointError if unusable."""
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"No checkpoint in {self.directory}.")
      return step
    if step not in self.all_steps():
      raise CheckpointError(
          f"No checkpoint of step {step} in {self.directory}; available: {self.all_steps()}.")
    if not self._verify(step):
      where = "left in place" if self.read_only else f"moved to {self.damaged_directory}"
      raise CheckpointError(
          f"The checkpoint of step {step} in {self.directory} is damaged or unverified "
          f"({where}); available: {self.all_steps()}.")
    return step

  def _verify(self, step: int) -> bool:
    """Whether `step` may be restored. The writer moves a damaged or unverified step aside; a
    reader only skips it."""
    if step in self._verified:
      return True
    step_dir = self.directory / str(step)
    if (step_dir / MANIFEST).is_file():
      problem = manifest_problem(step_dir)
    elif any((self.directory / str(s) / MANIFEST).is_file() for s in self.all_steps()):
      problem = ("it has no manifest, unlike the other steps (the run stopped after the save, "
                 "before its manifest was written)")
    else:
      logging.warning("Checkpoint %s has no %s (written by an older version): restoring it "
                      "without verifying its files.", step_dir, MANIFEST)
      self._unverifiable.add(step)
      problem = None
    if problem is None:
      self._verified.add(step)
      return True
    if self.read_only:
      logging.warning("Skipping checkpoint %s: %s (left in place; only the training process "
                      "moves damaged checkpoints aside).", step_dir, problem)
      self._skipped.add(step)
      return False
    destination = self.damaged_directory / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    logging.warning("Checkpoint %s is damaged: %s. Moved it to %s; the previous good checkpoint "
                    "is used.", step_dir, problem, destination)
    if jax.process_index() == 0:
      destination.parent.mkdir(parents=True, exist_ok=True)
      shutil.move(str(step_dir), str(destination))
    self._manager.reload()
    return False


def _file_digests(step_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
  """Relative path -> {"sha256", "size"} of every file under `step_dir` but the manifest."""
  digests = {}
  for path in sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):  # pylint: disable=cell-var-from-loop
        digest.update(block)
    digests[path.relative_to(step_dir).as_posix()] = {"sha256": digest.hexdigest(),
                                                      "size": path.stat().st_size}
  return digests


def write_manifest(step_dir: pathlib.Path) -> None:
  """Writes `step_dir/MANIFEST` (SHA-256 and size of every other file) atomically."""
  files.write_atomic(step_dir / MANIFEST,
                     json.dumps({"files": _file_digests(step_dir)}, indent=1, sort_keys=True))


def _schema_problem(manifest: Any) -> str | None:
  """What is wrong with a parsed manifest's structure (None when it has the schema of
  `write_manifest`: {"files": {path: {"sha256": 64 hex digits, "size": int >= 0}}}, >= 1 file)."""
  if not isinstance(manifest, dict) or set(manifest) != {"files"}:
    return 'it is not an object with the single key "files"'
  files = manifest["files"]
  if not isinstance(files, dict) or not files:
    return '"files" is not a non-empty object'
  for name, entry in files.items():
    if not (isinstance(entry, dict) and set(entry) == {"sha256", "size"}
            and isinstance(entry["sha256"], str) and _SHA256.fullmatch(entry["sha256"])
            and isinstance(entry["size"], int) and not isinstance(entry["size"], bool)
            and entry["size"] >= 0):
      return f'the entry of {name!r} is not {{"sha256": 64 hex digits, "size": bytes}}'
  return None


def manifest_problem(step_dir: pathlib.Path) -> str | None:
  """How `step_dir`'s files differ from its manifest (None when they match exactly): an
  unreadable or malformed manifest, or files missing, changed, or not listed in it."""
  try:
    manifest = json.loads((step_dir / MANIFEST).read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    return f"its {MANIFEST} is unreadable ({e})"
  schema = _schema_problem(manifest)
  if schema:
    return f"its {MANIFEST} is malformed: {schema}"
  expected = manifest["files"]
  actual = _file_digests(step_dir)
  missing = sorted(set(expected) - set(actual))
  unlisted = sorted(set(actual) - set(expected))
  changed = sorted(name for name in set(expected) & set(actual) if expected[name] != actual[name])
  problems = ([f"missing files {missing}"] if missing else []) + (
      [f"changed files {changed}"] if changed else []) + (
      [f"files not in its manifest {unlisted}"] if unlisted else [])
  return "; ".join(problems) or None


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of arrays: the target of a restore."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
