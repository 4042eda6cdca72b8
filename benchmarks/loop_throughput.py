"""Throughput of the training loop against its bare train step, paired in one process.

  python -m benchmarks.loop_throughput --data_dir=../shared/data/mnist [--batch_sizes=32,512]

For each batch size B, on the default MNIST MLP cMIM (`experiments/configs/mnist.py`):
- bare step: `training.make_train_step`'s jitted step on one fixed, pre-placed batch, called in a
  tight loop (no gather, no metrics read), `--steps` steps per repeat, timed to the last result;
- loop: `training.train_and_evaluate` itself (gather on the devices, metric totals, logging,
  progress), `--repeats` log intervals of `--steps` steps after a first interval that compiles,
  each interval's examples/s as the loop writes it to metrics.jsonl (evaluation off, one
  checkpoint at the end).
Bare repeats run before and after the loop; the table gives medians and loop / bare.
`--steps` defaults to max(20, 16384 // B) so each repeat does the same work at every B.
"""

import json
import pathlib
import statistics
import tempfile
import time

import jax
from absl import app, flags

from cmim_jax import objectives, sharding, tasks, training
from experiments.configs import mnist as mnist_config

_DATA_DIR = flags.DEFINE_string("data_dir", "", "Folder with the MNIST IDX files.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32", "128", "512", "2048"], "Batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per repeat; 0 = max(20, 16384 // B).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats of each kind.")
_STEPS_PER_DISPATCH = flags.DEFINE_integer("steps_per_dispatch", 1, "The loop's k.")


def _config(batch_size: int, steps: int):
  config = mnist_config.get_config()
  # D and τ of the recorded results (the config's defaults before issue 11).
  config.model.latent_dim, config.loss.temperature = 16, 0.1
  config.data.data_dir = _DATA_DIR.value
  config.data.allow_fallback = False
  config.data.batch_size = batch_size
  config.train.num_steps = steps * (_REPEATS.value + 1)
  config.train.log_every_steps = steps
  config.train.steps_per_dispatch = _STEPS_PER_DISPATCH.value
  config.checkpoint.every_steps = config.train.num_steps
  config.eval.at_end = False
  return config


def bare_step_rates(config, task, steps: int, repeats: int) -> list[float]:
  """examples/s of `repeats` runs of `steps` bare steps on one fixed batch."""
  mesh = sharding.make_data_mesh()
  _, state, step = training.setup(config, objectives.get_method(config.loss.method), task, mesh,
                                  jax.random.key(0))
  batch = jax.device_put({"image": task.train_arrays["image"][:config.data.batch_size]},
                         sharding.batch_sharded(mesh))
  key = jax.random.key(1)
  state, metrics = step(state, batch, key)  # Compile.
  jax.block_until_ready(metrics)
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, batch, key)
    jax.block_until_ready((state, metrics))
    rates.append(steps * config.data.batch_size / (time.perf_counter() - start))
  return rates


def loop_rates(config) -> list[float]:
  """examples/s of the loop's log intervals after the first (which compiles)."""
  with tempfile.TemporaryDirectory() as workdir:
    training.train_and_evaluate(config, workdir)
    records = [json.loads(line) for line in
               (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]
  return [r["examples_per_sec"] for r in records[1:]]


def main(argv):
  del argv
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"steps_per_dispatch={_STEPS_PER_DISPATCH.value}")
  print("| batch | steps/repeat | bare step examples/s | loop examples/s | loop / bare |")
  print("| --- | --- | --- | --- | --- |")
  for batch_size in map(int, _BATCH_SIZES.value):
    steps = _STEPS.value or max(20, 16384 // batch_size)
    config = _config(batch_size, steps)
    task = tasks.build_task(config)
    bare = bare_step_rates(config, task, steps, _REPEATS.value)
    loop = loop_rates(config)
    bare += bare_step_rates(config, task, steps, _REPEATS.value)
    bare_median, loop_median = statistics.median(bare), statistics.median(loop)
    print(f"| {batch_size} | {steps} | {bare_median:,.0f} | {loop_median:,.0f} | "
          f"{loop_median / bare_median:.3f} |", flush=True)
    print(f"  bare {[round(r) for r in bare]}  loop {[round(r) for r in loop]}", flush=True)


if __name__ == "__main__":
  app.run(main)
