"""Contrastive loss+grad: wall time and compiled temp memory, dense vs blockwise.

  python -m benchmarks.contrastive_memory [--batch_sizes=1024,4096,16384,65536] [--dim=64]
      [--block_size=512] [--term=mean] [--max_dense_gib=8] [--check_batch=4096]

The timed function is the gradient of -mean_i contrastive_log_prob(mu, z)_i (the cMIM term with
the "mean" denominator; `--term=sum` or `infonce` for the others) with respect to both inputs,
jitted, on random [B, D] float32 inputs. Temp memory is XLA's `memory_analysis()` of the compiled
program (scratch space beyond arguments and outputs). The dense path needs about 3 * B^2 * 4 bytes
and is skipped where that exceeds `--max_dense_gib`. At `--check_batch` the blockwise loss and
gradients are compared with the dense ones. Results are recorded in benchmarks/RESULTS.md.
"""

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from cmim_jax import losses

FLAGS = flags.FLAGS
_GIB = 2.0 ** 30
_MIB = 2.0 ** 20


def _loss(mu, z, block_size, term):
  if term == "infonce":
    return losses.infonce_loss(mu, z, temperature=0.1, block_size=block_size)
  return -jnp.mean(losses.contrastive_log_prob(mu, z, temperature=0.1, denominator=term,
                                               block_size=block_size))


def _inputs(batch_size, dim):
  mu = jax.random.normal(jax.random.key(0), (batch_size, dim))
  z = mu + 4.0 * jax.random.normal(jax.random.key(1), (batch_size, dim))  # cos ~ 0.24.
  return mu, z


def measure(batch_size: int, block_size: int | None, dim: int = 64, term: str = "mean",
            repeats: int = 3):
  """(compiled temp MiB, median seconds per loss+grad, (loss, grads)) of one path.

  `repeats` timed calls up to B = 16,384, one above; `block_size=None` is the dense path.
  """
  fn = jax.jit(jax.value_and_grad(functools.partial(_loss, block_size=block_size, term=term),
                                  argnums=(0, 1)))
  mu, z = _inputs(batch_size, dim)
  compiled = fn.lower(mu, z).compile()
  temp_mib = compiled.memory_analysis().temp_size_in_bytes / _MIB
  result = jax.block_until_ready(compiled(mu, z))  # Warm-up.
  times = []
  for _ in range(repeats if batch_size <= 16384 else 1):
    start = time.perf_counter()
    jax.block_until_ready(compiled(mu, z))
    times.append(time.perf_counter() - start)
  return temp_mib, statistics.median(times), result


def main(argv):
  del argv
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; term {FLAGS.term}, "
        f"D = {FLAGS.dim}, block_size = {FLAGS.block_size}")
  print("| B | path | compiled temp memory | loss+grad time |")
  print("| --- | --- | --- | --- |")
  for batch_size in map(int, FLAGS.batch_sizes):
    for name, block_size in (("dense", None), ("blockwise", FLAGS.block_size)):
      if block_size is None and 3 * batch_size ** 2 * 4 / _GIB > FLAGS.max_dense_gib:
        print(f"| {batch_size:,} | {name} | skipped: needs about "
              f"{3 * batch_size ** 2 * 4 / _GIB:.1f} GiB > --max_dense_gib={FLAGS.max_dense_gib:g}"
              " |  |")
        continue
      temp_mib, seconds, _ = measure(batch_size, block_size, FLAGS.dim, FLAGS.term, FLAGS.repeats)
      print(f"| {batch_size:,} | {name} | {temp_mib:,.1f} MiB | {seconds:.3f} s |", flush=True)

  (dense_loss, dense_grads), (loss, grads) = (
      measure(FLAGS.check_batch, block_size, FLAGS.dim, FLAGS.term, FLAGS.repeats)[2]
      for block_size in (None, FLAGS.block_size))
  grad_diff = max(float(jnp.max(jnp.abs(g - d))) for g, d in zip(grads, dense_grads))
  grad_scale = max(float(jnp.max(jnp.abs(d))) for d in dense_grads)
  print(f"B = {FLAGS.check_batch:,}: dense loss {float(dense_loss):.7f}, blockwise "
        f"{float(loss):.7f}, |difference| {abs(float(loss - dense_loss)):.2e}; max |gradient "
        f"difference| {grad_diff:.2e} (max |gradient| {grad_scale:.2e})")
  np.testing.assert_allclose(loss, dense_loss, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
  # Defined here, not at import, so that benchmarks.device_suite can import `measure` beside
  # other benchmarks' flags.
  flags.DEFINE_list("batch_sizes", ["1024", "4096", "16384", "65536"], "Batch sizes.")
  flags.DEFINE_integer("dim", 64, "Latent size D.")
  flags.DEFINE_integer("block_size", 512, "Columns per block of the blockwise path.")
  flags.DEFINE_enum("term", "mean", ["mean", "sum", "infonce"], "Contrastive term.")
  flags.DEFINE_float("max_dense_gib", 8.0,
                     "Skip the dense path where 3 * B^2 * 4 bytes exceed this.")
  flags.DEFINE_integer("repeats", 3, "Timed calls (median); 1 above 16,384 rows.")
  flags.DEFINE_integer("check_batch", 4096, "Batch of the dense/blockwise comparison.")
  app.run(main)
