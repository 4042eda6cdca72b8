"""Train-step throughput: examples/s of the jitted, sharded step for each architecture and method.

  python -m benchmarks.train_step [--encoders=mlp,conv] [--methods=cmim,mim] [--batch_sizes=128,512]

Uses synthetic uint8 images (the step does not care about content), excludes compilation, and
reports the median over repeats of `--steps` steps. Results are recorded in benchmarks/RESULTS.md.
"""

import statistics
import time

import jax
import numpy as np
from absl import app, flags

from cmim_jax import objectives, sharding, training
from cmim_jax.tasks.images import ImageTask
from cmim_jax.data.mnist import ImageDataset
from experiments.configs import mnist as mnist_config

_ENCODERS = flags.DEFINE_list("encoders", ["mlp", "conv"], "Architectures.")
_METHODS = flags.DEFINE_list("methods", ["cmim", "mim", "vae"], "Methods.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["128", "512"], "Global batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 50, "Steps per timed repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats.")


def _synthetic_task(config, num_examples=4096):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (num_examples, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, num_examples).astype(np.int32)
  return ImageTask(ImageDataset(images, labels, images[:512], labels[:512], "synthetic"), config)


def measure(encoder: str, method: str, batch_size: int) -> float:
  """Median examples/s of the train step."""
  config = mnist_config.get_config()
  # D and τ of the recorded results (the config's defaults before issue 11).
  config.model.latent_dim, config.loss.temperature = 16, 0.1
  config.model.encoder, config.loss.method, config.data.batch_size = encoder, method, batch_size
  mesh = sharding.make_data_mesh()
  task = _synthetic_task(config)
  _, state, step = training.setup(config, objectives.get_method(method), task, mesh,
                                  jax.random.key(0))
  batch = jax.device_put({"image": task.train_arrays["image"][:batch_size]},
                         sharding.batch_sharded(mesh))
  key = jax.random.key(1)
  state, metrics = step(state, batch, key)  # Compile.
  jax.block_until_ready(metrics)
  rates = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    rates.append(_STEPS.value * batch_size / (time.perf_counter() - start))
  return statistics.median(rates)


def main(argv):
  del argv
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  print("| encoder | method | batch | examples/s |\n| --- | --- | --- | --- |")
  for encoder in _ENCODERS.value:
    for method in _METHODS.value:
      for batch_size in map(int, _BATCH_SIZES.value):
        print(f"| {encoder} | {method} | {batch_size} | {measure(encoder, method, batch_size):,.0f} |",
              flush=True)


if __name__ == "__main__":
  app.run(main)
