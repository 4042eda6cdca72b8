"""Where training metrics go: `metrics.jsonl` (one JSON object per logged step) and TensorBoard."""

from __future__ import annotations

import json
import pathlib
from typing import Mapping

import tensorboardX


class MetricWriter:
  """Appends scalars to `workdir/metrics.jsonl` and to TensorBoard events in `workdir/tensorboard`.

  On a resumed run, pass `resume_step`: JSONL lines of steps after it (logged by the interrupted run
  after its last checkpoint, and about to be logged again) are dropped first. With `enabled=False`
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
    kept = [line for line in self.jsonl_path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    self.jsonl_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(name, float(value), int(step))

  def close(self) -> None:
    if not self.enabled:
      return
    self._jsonl.close()
    self._tensorboard.close()
