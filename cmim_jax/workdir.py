"""What guards a training workdir: one writer at a time, and a resume only with the same objective.

* `WorkdirLock`: an exclusive kernel lock (`fcntl.flock`) on `<workdir>/.lock`, taken by the
  training process (process 0 of a multi-process job) before it writes anything. The kernel drops
  it when the process ends in any way, SIGKILL included, so a lock is never stale. The file names
  the holder (host and pid) for the error a second trainer gets. Readers never take it.
* `check_resume_config`: the config saved with a checkpoint against the config of the run that
  resumes it. Every field must match but `MAY_CHANGE_ON_RESUME` (run length and cadences, the
  learning rate and gradient clipping, where the data are read from, evaluation, compilation
  cache): the others decide the parameters or the objective (model, method, loss terms, data set,
  latent size, dtype, seed, batch size, input pipeline).
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
from typing import Any, Mapping

import ml_collections
from absl import logging

from cmim_jax import errors

LOCK_FILE = ".lock"

# Fields a resumed run may change (prefix "eval." covers the section). Anything else that differs
# from the saved config is an error. train.num_steps may only grow (checked by training).
MAY_CHANGE_ON_RESUME = (
    "train.num_steps", "train.log_every_steps", "train.steps_per_dispatch",
    # The optimiser's step size and clipping (same state): lowered to resume a diverged run.
    "train.learning_rate", "train.grad_clip_norm",
    "checkpoint.every_steps", "checkpoint.max_to_keep", "eval.", "compilation_cache_dir",
    "distributed", "data.data_dir", "data.mirrors", "data.download_timeout", "data.source",
    "data.reader_threads", "data.prefetch_batches", "data.token_file_dir",
)


class WorkdirBusyError(errors.CmimError, RuntimeError):
  """Another process holds the workdir's lock (it is training into it)."""


class WorkdirLock:
  """An exclusive, non-blocking `flock` on `<workdir>/.lock`; use as a context manager."""

  def __init__(self, workdir: str | pathlib.Path):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK_FILE
    self._fd: int | None = None

  def acquire(self) -> None:
    """Takes the lock or raises WorkdirBusyError naming the holder (host, pid)."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "unknown holder"
      os.close(fd)
      raise WorkdirBusyError(
          f"{self.workdir} is in use by another training process ({holder}); wait for it to "
          "finish or stop it, or pass another --workdir.") from None
    except BaseException:
      os.close(fd)
      raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode(), 0)
    self._fd = fd

  def release(self) -> None:
    """Drops the lock (the file stays; its content is only read while it is held)."""
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """A nested mapping (a config as a dict) -> {"group.field": value} of its leaves."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _as_saved(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as its JSON copy in a checkpoint reads back (tuples become lists)."""
  return json.loads(json.dumps(config.to_dict()))


def _may_change(field: str) -> bool:
  return any(field == allowed or (allowed.endswith(".") and field.startswith(allowed))
             for allowed in MAY_CHANGE_ON_RESUME)


def config_changes(saved: Mapping[str, Any],
                   config: ml_collections.ConfigDict) -> list[tuple[str, Any, Any]]:
  """(field, saved value, new value) of every field outside `MAY_CHANGE_ON_RESUME` that differs.

  Fields only one of the two has (a config from an older or newer version of the code) are left
  out, with a log line.
  """
  old, new = flatten(saved), flatten(_as_saved(config))
  one_sided = sorted(set(old) ^ set(new))
  if one_sided:
    logging.info("Fields not compared on resume (only in the saved or only in the new config): "
                 "%s", one_sided)
  return [(field, old[field], new[field]) for field in sorted(set(old) & set(new))
          if old[field] != new[field] and not _may_change(field)]


def check_resume_config(saved: Mapping[str, Any], config: ml_collections.ConfigDict,
                        checkpoint: pathlib.Path) -> None:
  """Raises a ConfigError listing each field (old -> new) that a resume may not change."""
  changes = config_changes(saved, config)
  if changes:
    listed = "; ".join(f"{field} {old!r} -> {new!r}" for field, old, new in changes)
    raise errors.ConfigError(
        f"The config differs from the one saved with {checkpoint} in what decides the parameters "
        f"or the objective: {listed}. Resume with the saved values, or train into a new "
        "--workdir.")
