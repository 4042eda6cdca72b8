"""Trains a model: `python -m experiments.main --config=experiments/configs/mnist.py --workdir=DIR`.

Config fields can be overridden on the command line (`--config.loss.method=mim`). Running again
with the same --workdir resumes from the latest checkpoint.
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from cmim_jax import compilation_cache, training

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summary.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  compilation_cache.enable(config.get("compilation_cache_dir", ""))
  if config.distributed:
    jax.distributed.initialize()
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  logging.info("Config:\n%s", config)
  training.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
