"""The importance-weighted bound on log p(x) of any checkpoint with a decoder.

  python -m experiments.likelihood --workdir=DIR --num_samples=1000

Scores the first --num_examples held-out inputs (0: all) of the run's task with K = --num_samples
samples of q(z|x) (`cmim_jax.generation.likelihood`), prints the nats per example and bits per
dimension and writes them to DIR/likelihood_K<K>.json.
"""

import json
import pathlib
import time

from absl import flags, logging

from cmim_jax import embedding
from cmim_jax.generation import report
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder with checkpoints/.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1000, "K, importance samples per example.")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 1000, "Held-out examples scored; 0 = all.")
_CHUNK = flags.DEFINE_integer("chunk_size", 0, "Samples per chunk (memory); 0 = min(K, 64).")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Examples per batch.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default the latest.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override config.data.data_dir.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the samples.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  trained = embedding.load_trained(_WORKDIR.value, _STEP.value, data_dir=_DATA_DIR.value)
  start = time.perf_counter()
  metrics = report.likelihood_metrics(trained.task, trained.model, trained.params, trained.mesh,
                                      _NUM_SAMPLES.value, _NUM_EXAMPLES.value, _CHUNK.value,
                                      _BATCH.value, _SEED.value)
  metrics.update(step=trained.step, method=trained.config.loss.method,
                 seconds=round(time.perf_counter() - start, 1))
  path = pathlib.Path(_WORKDIR.value) / f"likelihood_K{_NUM_SAMPLES.value}.json"
  path.write_text(json.dumps(metrics, indent=2) + "\n")
  logging.info("%s", json.dumps(metrics))
  print(f"{metrics['method']} step {metrics['step']}: -log p(x) <= {metrics['nll_bound']:.3f} "
        f"+- {metrics['nll_bound_stderr']:.3f} nats/example, {metrics['bits_per_dim_bound']:.4f} "
        f"bits/dim (K = {metrics['likelihood_num_samples']}, "
        f"{metrics['likelihood_num_examples']} examples; -ELBO {metrics['negative_elbo']:.3f}) "
        f"-> {path}")


if __name__ == "__main__":
  cli.run(main)
