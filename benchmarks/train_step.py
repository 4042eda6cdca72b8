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

FLAGS = flags.FLAGS


def _synthetic_task(config, num_examples=4096):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (num_examples, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, num_examples).astype(np.int32)
  return ImageTask(ImageDataset(images, labels, images[:512], labels[:512], "synthetic"), config)


def measure(encoder: str, method: str, batch_size: int, steps: int = 50, repeats: int = 3,
            dtype: str = "float32", block_size: int = 0, repeat_seconds: float = 0.0) -> float:
  """Median examples/s of the train step over `repeats` runs of `steps` steps.

  `dtype` is `config.model.dtype` (the compute dtype); `block_size` is `config.loss.block_size`
  (0: dense [B, B] contrastive logits). `repeat_seconds` > 0 replaces `steps` by as many steps
  (3 to 200) as one step's time says fill that many seconds.
  """
  config = mnist_config.get_config()
  # D and τ of the recorded results (the config's defaults before issue 11).
  config.model.latent_dim, config.loss.temperature = 16, 0.1
  config.model.encoder, config.loss.method, config.data.batch_size = encoder, method, batch_size
  config.model.dtype, config.loss.block_size = dtype, block_size
  mesh = sharding.make_data_mesh()
  task = _synthetic_task(config, max(4096, batch_size))
  _, state, step = training.setup(config, objectives.get_method(method), task, mesh,
                                  jax.random.key(0))
  batch = jax.device_put({"image": task.train_arrays["image"][:batch_size]},
                         sharding.batch_sharded(mesh))
  key = jax.random.key(1)
  state, metrics = step(state, batch, key)  # Compile.
  jax.block_until_ready(metrics)
  if repeat_seconds > 0:
    start = time.perf_counter()
    state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    steps = int(min(200, max(3, repeat_seconds / (time.perf_counter() - start))))
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    rates.append(steps * batch_size / (time.perf_counter() - start))
  return statistics.median(rates)


def main(argv):
  del argv
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  print("| encoder | method | batch | examples/s |\n| --- | --- | --- | --- |")
  for encoder in FLAGS.encoders:
    for method in FLAGS.methods:
      for batch_size in map(int, FLAGS.batch_sizes):
        rate = measure(encoder, method, batch_size, FLAGS.steps, FLAGS.repeats)
        print(f"| {encoder} | {method} | {batch_size} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
  # Defined here, not at import, so that benchmarks.device_suite can import `measure` beside
  # other benchmarks' flags.
  flags.DEFINE_list("encoders", ["mlp", "conv"], "Architectures.")
  flags.DEFINE_list("methods", ["cmim", "mim", "vae"], "Methods.")
  flags.DEFINE_list("batch_sizes", ["128", "512"], "Global batch sizes.")
  flags.DEFINE_integer("steps", 50, "Steps per timed repeat.")
  flags.DEFINE_integer("repeats", 3, "Timed repeats.")
  app.run(main)
