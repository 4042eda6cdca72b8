"""Orchestration shared by the paper's experiments: run, resume, embed, probe, record.

Every run is an ordinary `experiments.main` run (same `train_and_evaluate`) in its own workdir
under one output folder. A run whose `summary.json` exists is done and is not repeated; an
interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
from absl import logging

from cmim_jax import training


def machine_description() -> str:
  """E.g. 'CPU x86_64, 2 cores (jax 0.10.2, 1 cpu device)' or the GPU's name."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    import os  # pylint: disable=g-import-not-at-top
    return (f"CPU {platform.machine()}, {os.cpu_count()} cores "
            f"(jax {jax.__version__}, {jax.device_count()} cpu device(s))")
  return f"{jax.device_count()} x {device.device_kind} (jax {jax.__version__})"


def run_or_load(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, Any]:
  """Trains `config` in `workdir` unless its summary.json exists; returns the summary + wall time."""
  summary_path = workdir / "summary.json"
  if summary_path.exists():
    logging.info("Done already: %s", workdir)
    return json.loads(summary_path.read_text())
  start = time.perf_counter()
  summary = training.train_and_evaluate(config, workdir)
  summary["wall_time_s"] = round(time.perf_counter() - start, 2)
  summary_path.write_text(json.dumps(summary, indent=2) + "\n")
  return summary


def run_in_processes(runs: Sequence[tuple[ml_collections.ConfigDict, pathlib.Path]],
                     processes: int) -> None:
  """Runs independent trainings in up to `processes` parallel `experiments.paper.run_one` processes.

  Each child gets the config as JSON; finished runs are skipped as in `run_or_load`.
  """
  pending = [(c, w) for c, w in runs if not (w / "summary.json").exists()]
  active: list[subprocess.Popen] = []
  for config, workdir in pending:
    while len(active) >= processes:
      active = _reap(active)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "requested_config.json").write_text(config.to_json_best_effort(indent=2))
    active.append(subprocess.Popen(
        [sys.executable, "-m", "experiments.paper.run_one", str(workdir)]))
  while active:
    active = _reap(active)


def _reap(active: list[subprocess.Popen]) -> list[subprocess.Popen]:
  time.sleep(0.5)
  still = []
  for process in active:
    code = process.poll()
    if code is None:
      still.append(process)
    elif code:
      raise RuntimeError(f"Run {process.args[-1]} failed with exit code {code}; see its log.")
  return still


def write_json(path: pathlib.Path, value: Mapping[str, Any]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value, indent=2, default=float) + "\n")
