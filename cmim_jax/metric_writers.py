"""Where training metrics go: `metrics.jsonl` (one JSON object per logged step) and TensorBoard."""

from __future__ import annotations

import json
import pathlib
from typing import Mapping

import tensorboardX
from absl import logging

from cmim_jax import files


def _parse_record(line: str) -> dict | None:
  """The record of one metrics.jsonl line, or None when it is not a whole one."""
  try:
    record = json.loads(line)
  except ValueError:
    return None
  if not isinstance(record, dict) or not isinstance(record.get("step"), int):
    return None
  return record


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` and to TensorBoard events in `workdir/tensorboard`.

  On a resumed run, pass `resume_step`: JSONL lines of steps after it (logged by the interrupted run
  after its last checkpoint, and about to be logged again) are dropped first, and so is a torn
  line (with a warning). Each record is written as one whole line. With `enabled=False`
  (processes other than the first in a multi-host run) it writes nothing.
  """

  def __init__(self, workdir: str | pathlib.Path, resume_step: int | None = None,
               enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    self.jsonl_path = workdir / "metrics.jsonl"
    if self.jsonl_path.exists():
      self._truncate_after(resume_step or 0)
    self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
    self._tensorboard = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))

  def _truncate_after(self, step: int) -> None:
    """Keeps the lines of steps <= `step` (atomically). A line that is not a whole record (the
    torn last line of a killed run) is dropped with a warning."""
    kept = []
    lines = self.jsonl_path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
      if not line.strip():
        continue
      record = _parse_record(line)
      if record is None:
        logging.warning("Dropping line %d of %s: not a whole metrics record (a run stopped "
                        "while writing it).", number, self.jsonl_path)
      elif record["step"] <= step:
        kept.append(line)
    files.write_atomic(self.jsonl_path, "".join(line + "\n" for line in kept))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + "\n")  # One write of one whole line.
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, float(value), int(step))

  def close(self) -> None:
    if not self.enabled:
      return
    self._jsonl.close()
    self._tensorboard.close()
