"""Trains a model: `python -m experiments.main --config=experiments/configs/mnist.py --workdir=DIR`.

Config fields can be overridden on the command line (`--config.loss.method=mim`). Running again
with the same --workdir resumes from the latest checkpoint. The run ends with the JSON summary
(also in DIR/summary.json) and a short human summary: the headline metrics and where the files are.
"""

import json
import pathlib
from typing import Any, Mapping

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from cmim_jax import compilation_cache, distributed, training
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summary.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def human_summary(summary: Mapping[str, Any], workdir: str) -> str:
  """A few lines for a person: what ran, the headline metrics, the files, the next command."""
  workdir = pathlib.Path(workdir)
  metrics = [f"  {key}: {value:.4g}" for key, value in summary.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)
             and key != "step"]
  return "\n".join([
      f"Done: {summary['method']} trained for {summary['step']} steps on data from "
      f"{summary['data_source']}.",
      "Test metrics:", *metrics,
      *([f"Input rows read, kept and skipped: {json.dumps(summary['input_rows'])}"]
        if "input_rows" in summary else []),
      f"Files: {workdir / 'summary.json'}, {workdir / 'metrics.jsonl'}, "
      f"{workdir / 'checkpoints'}/, {workdir / 'tensorboard'}/",
      f"Next: {cli.python_command()} -m experiments.embed --workdir={workdir}"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  compilation_cache.enable(config.get("compilation_cache_dir", ""))
  if config.get("distributed", False):
    distributed.initialize()
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  logging.info("Config:\n%s", config)
  summary = training.train_and_evaluate(config, _WORKDIR.value)
  if jax.process_index() == 0:
    logging.info("%s", human_summary(summary, _WORKDIR.value))


if __name__ == "__main__":
  cli.run(main)
