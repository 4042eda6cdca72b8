"""Fixed costs of a short MNIST run, first start (cold compilation cache) and second start (warm).

  python -m benchmarks.startup --data_dir=../shared/data/mnist [--num_steps=300]

Runs `python -m experiments.main --config=experiments/configs/mnist.py` twice in fresh processes,
each in a new workdir (so the second does not resume), both with a compilation cache in a new
temporary folder, and splits each run's wall time using the run's own log lines: imports (launch
to the entry point's first line), data load, initialisation (compiles the init), the train step's
compile, training, evaluation, and the rest (checkpointing, writers, exit).
"""

import datetime
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with the MNIST IDX files.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 300, "Training steps of each run.")
flags.mark_flag_as_required("data_dir")

_LOG_LINE = re.compile(r"^[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d{6}) .*?\] (.*)$")
_PHASE_SECONDS = {  # Phase -> a pattern of the log line that reports its duration.
    "data load": r"Data loaded and placed on the devices in ([\d.]+) s",
    "init compile": r"Parameters: \d+ \(initialised in ([\d.]+) s\)",
    "step compile": r"Train step compiled in ([\d.]+) s",
    "evaluation": r"Evaluation took ([\d.]+) s",
}


def _timestamped_lines(output: str) -> list[tuple[float, str]]:
  lines = []
  year = datetime.date.today().year
  for line in output.splitlines():
    match = _LOG_LINE.match(line)
    if match:
      stamp = datetime.datetime.strptime(f"{year}{match[1]} {match[2]}", "%Y%m%d %H:%M:%S.%f")
      lines.append((stamp.timestamp(), match[3]))
  return lines


def _first(lines, pattern: str) -> tuple[float, re.Match]:
  for stamp, message in lines:
    match = re.search(pattern, message)
    if match:
      return stamp, match
  raise ValueError(f"No log line matches {pattern!r}.")


def run_once(workdir: pathlib.Path, cache: pathlib.Path) -> dict[str, float]:
  """Seconds spent in each phase of one run."""
  command = [sys.executable, "-m", "experiments.main", "--config=experiments/configs/mnist.py",
             f"--workdir={workdir}", f"--config.data.data_dir={_DATA_DIR.value}",
             f"--config.train.num_steps={_NUM_STEPS.value}"]
  launch = time.time()
  result = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "CMIM_JAX_COMPILATION_CACHE": str(cache)})
  end = time.time()
  if result.returncode:
    raise RuntimeError(result.stderr[-3000:])
  lines = _timestamped_lines(result.stderr)
  entry, _ = _first(lines, r"^Compilation cache:")
  compiled, _ = _first(lines, _PHASE_SECONDS["step compile"])
  trained, _ = _first(lines, r"^Training done\.")
  phases = {"imports": entry - launch}
  phases.update({name: float(_first(lines, pattern)[1][1])
                 for name, pattern in _PHASE_SECONDS.items()})
  phases["training"] = trained - compiled
  phases["rest"] = (end - launch) - sum(phases.values())
  phases["before the first step"] = compiled - launch
  phases["total"] = end - launch
  return phases


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as folder:
    folder = pathlib.Path(folder)
    first = run_once(folder / "first", folder / "jax_cache")
    second = run_once(folder / "second", folder / "jax_cache")
  print(f"{_NUM_STEPS.value}-step MNIST run (seconds)\n| phase | first start | second start |")
  print("| --- | --- | --- |")
  for name in first:
    print(f"| {name} | {first[name]:.1f} | {second[name]:.1f} |")


if __name__ == "__main__":
  app.run(main)
