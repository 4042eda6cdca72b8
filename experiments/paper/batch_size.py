"""Experiment 2: sensitivity of the representation to the training batch size.

  python -m experiments.paper.batch_size --preset=smoke|cpu|full --protocol=fixed_steps \
      --out=runs/paper [--data_dir=../shared/data/mnist] [--figures=docs/figures] [--processes=1]

Trains cMIM, cMIM-Sigma (cmim_sum), InfoNCE (augmentations on, as always for it) and MIM on MNIST
at each batch size B of the preset, several seeds each, on one device (so any B is allowed). Two
protocols:
  fixed_steps     (the paper's) every run takes the same number of optimiser steps, so a larger
                  batch sees more examples;
  fixed_examples  every run sees the same number of training examples (steps = examples // B),
                  so a larger batch takes fewer steps.
Each run's mean encodings are probed (the preset's probes); z-scores are taken per (probe, metric)
across all runs of all methods (`cmim_jax.probes.compare`). Per method, the z-score and each
probe's accuracy of the (B, seed) runs are regressed on ln B (slope, 95 % CI, p-value;
`stats.fit_line`), and the slopes of cMIM are compared with InfoNCE's and cMIM-Sigma's
(`stats.slope_difference`: difference, 95 % CI, p).
Only the mean embedding is compared: InfoNCE has no decoder, hence no informative embedding.
Beside the runs' accuracies stand the baselines raw pixels and PCA of the pixels at the latent size,
with the same probes: functions of the inputs alone, so probed once (from the first run's files).
Writes OUT/batch_size_<preset> (fixed_examples) or OUT/batch_size_fixed_steps_<preset>
/{report.md, results.json, batch_size_z.png}.
"""

from __future__ import annotations

import collections
import pathlib

import numpy as np
from absl import flags

from cmim_jax.probes import evaluate
from cmim_jax.probes import report as report_lib
from experiments import cli
from experiments.configs import mnist as mnist_config
from experiments.paper import common, stats

FLAGS = flags.FLAGS
PROTOCOLS = ("fixed_steps", "fixed_examples")
ALL_BATCH_SIZES = (2, 5, 10, 50, 100, 200, 500, 1000)
ALL_METHODS = ("cmim", "cmim_sum", "infonce", "mim")
PRESETS = {
    # Seconds: three batch sizes, one seed (3 points per regression), a tiny MLP.
    "smoke": dict(methods=("cmim", "infonce"), batch_sizes=(2, 10, 50), seeds=1, examples=200,
                  steps=5, hidden_sizes=(32,), latent_dim=8, temperature=0.1,
                  probes=("knn5_cosine", "logistic_regression"), max_train=200),
    # The 2-core CPU, about 20 minutes each. fixed_examples: the four methods at five of the batch
    # sizes, 10,000 examples per run (B=2 takes 5,000 steps, B=1000 10). fixed_steps: all eight B,
    # 200 steps per run (B=1000 sees 200,000 examples, B=2 400). A small MLP, the config's D = 16
    # and τ = 1; the JAX linear probe on all training rows and KNN-5 on 2,000 of them.
    "cpu": dict(methods=ALL_METHODS, batch_sizes=(2, 10, 50, 200, 1000),
                seeds=3, examples=10_000, steps=200, hidden_sizes=(256,), latent_dim=16,
                temperature=1.0, probes=("knn5_cosine", "linear"), max_train=2000,
                fixed_steps=dict(batch_sizes=ALL_BATCH_SIZES, hidden_sizes=(128,))),
    # A GPU: the default MLP, D and τ, 10 epochs per run (fixed_examples) or 5,000 steps
    # (fixed_steps), the whole classification probe suite.
    "full": dict(methods=ALL_METHODS, batch_sizes=ALL_BATCH_SIZES, seeds=5, examples=600_000,
                 steps=5000, hidden_sizes=(512, 512), latent_dim=16, temperature=1.0, probes=None,
                 max_train=10000),
}


def preset_for(name: str, protocol: str) -> dict:
  """The preset `name` with the overrides of `protocol` (its entry of the same name) applied."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
  preset = dict(PRESETS[name])
  overrides = preset.pop("fixed_steps", {})
  if protocol == "fixed_steps":
    preset.update(overrides)
  preset["protocol"] = protocol
  return preset


def run_config(method: str, batch_size: int, seed: int, preset: dict, data_dir: str):
  """The MNIST config of one run: `preset["steps"]` steps (fixed_steps) or
  `preset["examples"] // batch_size` steps (fixed_examples) of `batch_size`."""
  num_steps = (preset["steps"] if preset.get("protocol") == "fixed_steps"
               else preset["examples"] // batch_size)
  if num_steps < 1:
    raise ValueError(f"{preset['examples']} examples give no step of batch size {batch_size}.")
  config = mnist_config.get_config()
  config.loss.method = method
  config.seed = seed
  config.data.data_dir = data_dir
  config.data.batch_size = batch_size
  config.model.hidden_sizes = preset["hidden_sizes"]
  config.model.latent_dim = preset["latent_dim"]
  config.loss.temperature = preset["temperature"]  # cMIM's and cMIM-Σ's; InfoNCE's stays.
  config.train.num_steps = num_steps
  config.train.log_every_steps = max(1, num_steps // 10)
  config.checkpoint.every_steps = num_steps
  config.checkpoint.max_to_keep = 1
  return config


SLOPE_COMPARISONS = (("cmim", "infonce"), ("cmim", "cmim_sum"))


def _points(values_by_run: dict[tuple[str, int, int], float]) -> dict[str, tuple[list, list]]:
  """method -> (batch sizes, values) over its (method, B, seed) runs."""
  points = collections.defaultdict(lambda: ([], []))
  for (method, batch_size, _), value in values_by_run.items():
    points[method][0].append(batch_size)
    points[method][1].append(value)
  return points


def regressions(values_by_run: dict[tuple[str, int, int], float]) -> dict[str, stats.LinearFit]:
  """Per method, the fit of a run's value (z-score or accuracy) on ln B over its runs."""
  return {method: stats.fit_z_against_log_batch(b, values)
          for method, (b, values) in _points(values_by_run).items()}


def slope_differences(values_by_run: dict[tuple[str, int, int], float]
                      ) -> dict[str, stats.Difference]:
  """"a - b" -> slope(a) - slope(b) on ln B, for the SLOPE_COMPARISONS whose methods both ran."""
  points = _points(values_by_run)
  return {f"{a} - {b}": stats.slope_difference(np.log(points[a][0]), points[a][1],
                                               np.log(points[b][0]), points[b][1])
          for a, b in SLOPE_COMPARISONS if a in points and b in points}


def plot(z_by_run: dict[tuple[str, int, int], float], fits: dict[str, stats.LinearFit],
         path: pathlib.Path) -> pathlib.Path:
  """z-score against B (log axis): each run a dot, the per-B mean a line, the fit dashed."""
  figure = report_lib.new_figure(figsize=(7, 4.2))
  axis = figure.subplots()
  for index, method in enumerate(fits):
    color = f"C{index}"
    runs = {(b, s): z for (m, b, s), z in z_by_run.items() if m == method}
    batch_sizes = sorted({b for b, _ in runs})
    axis.scatter([b for b, _ in runs], list(runs.values()), s=10, alpha=0.5, color=color)
    means = [np.mean([z for (b, _), z in runs.items() if b == size]) for size in batch_sizes]
    axis.plot(batch_sizes, means, color=color, label=f"{method} (slope {fits[method].slope:+.2f})")
    grid = np.array(batch_sizes, np.float64)
    axis.plot(grid, fits[method].intercept + fits[method].slope * np.log(grid), "--",
              color=color, alpha=0.6)
  axis.set_xscale("log")
  axis.set_xlabel("training batch size B")
  axis.set_ylabel("mean z-score (probes of the mean encoding)")
  axis.legend(fontsize=8)
  figure.tight_layout()
  return report_lib.save_figure(figure, path, dpi=100)


def conclusion(fits: dict[str, stats.LinearFit]) -> str:
  """One sentence per method saying what its slope's 95 % CI supports."""
  lines = []
  for method, fit in fits.items():
    if fit.slope_ci_low > 0:
      verdict = "improves with larger batches (CI above 0)"
    elif fit.slope_ci_high < 0:
      verdict = "worsens with larger batches (CI below 0)"
    else:
      verdict = "shows no significant trend with the batch size (CI contains 0)"
    lines.append(f"- {method} {verdict}: {fit.slope:+.3f} z per unit log B "
                 f"[{fit.slope_ci_low:+.3f}, {fit.slope_ci_high:+.3f}], p = {fit.p_value:.3g}.")
  return "\n".join(lines)


def _fit_table(fits: dict[str, stats.LinearFit], differences: dict[str, stats.Difference]) -> str:
  rows = [f"| {m} | {f.slope:+.4f} | [{f.slope_ci_low:+.4f}, {f.slope_ci_high:+.4f}] | "
          f"{f.p_value:.3g} | {f.num_points} |" for m, f in fits.items()]
  rows += [f"| {name} (difference of slopes) | {d.difference:+.4f} | [{d.ci_low:+.4f}, "
           f"{d.ci_high:+.4f}] | {d.p_value:.3g} | |" for name, d in differences.items()]
  return ("| method | slope per unit ln B | 95 % CI | p | runs |\n| --- | --- | --- | --- | --- |\n"
          + "\n".join(rows))


def baseline_accuracies(baselines: dict[str, dict]) -> dict[str, dict[str, float]]:
  """{"raw" / "pca": {"<probe> accuracy": value}} from {probe: {"raw" / "pca": {metric: ...}}}
  (`common.split_baselines`), named like the runs' accuracy metrics of `values`."""
  out: dict[str, dict[str, float]] = {}
  for probe, by_embedding in baselines.items():
    for name, by_metric in by_embedding.items():
      out.setdefault(name, {})[f"{probe} accuracy"] = by_metric["accuracy"]["mean"]
  return out


def accuracy_table(values: dict[str, dict], baselines: dict[str, dict[str, float]],
                   latent_dim: int) -> str:
  """Per probe, each method's mean accuracy (over seeds) at each B, then the baselines' (the same
  at every B: they do not depend on a run) on their own lines."""
  batch_sizes = sorted({b for _, b, _ in values["z"]})
  methods = list(dict.fromkeys(m for m, _, _ in values["z"]))
  described = {"raw": "raw pixels (baseline)",
               "pca": f"PCA of the pixels to {latent_dim} (baseline)"}
  lines = ["| probe | method | " + " | ".join(f"B={b}" for b in batch_sizes) + " |",
           "|" + " --- |" * (len(batch_sizes) + 2)]
  for metric in (m for m in values if m != "z"):
    for method in methods:
      cells = [np.mean([v for (m, b, _), v in values[metric].items() if m == method and b == size])
               for size in batch_sizes]
      lines.append(f"| {metric} | {method} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    for name, by_metric in baselines.items():
      if metric in by_metric:
        lines.append(f"| {metric} | {described[name]} | "
                     + " | ".join(f"{by_metric[metric]:.4f}" for _ in batch_sizes) + " |")
  return "\n".join(lines)


def report(preset_name: str, preset: dict, values: dict[str, dict], fits: dict[str, dict],
           differences: dict[str, dict], baselines: dict[str, dict[str, float]], wall_s: float,
           command: str) -> str:
  """The markdown report: mean z per B, mean accuracies beside the baselines' (raw pixels, PCA;
  `baseline_accuracies`), then per metric the slopes on ln B and their differences."""
  z_by_run = values["z"]
  batch_sizes = sorted({b for _, b, _ in z_by_run})
  header = "| method | " + " | ".join(f"B={b}" for b in batch_sizes) + " |\n|" + " --- |" * (
      len(batch_sizes) + 1) + "\n"
  rows = []
  for method in fits["z"]:
    cells = [np.mean([z for (m, b, _), z in z_by_run.items() if m == method and b == size])
             for size in batch_sizes]
    rows.append(f"| {method} | " + " | ".join(f"{c:+.2f}" for c in cells) + " |")
  probes = ", ".join(preset["probes"]) if preset["probes"] else "the full classification suite"
  budget = (f"{preset['steps']:,} optimiser steps each (fixed steps: a larger B sees more "
            "examples)" if preset["protocol"] == "fixed_steps" else
            f"{preset['examples']:,} training examples each (steps = examples // B)")
  sections = [f"Regression of {metric} on ln B, one point per (B, seed) run; the last rows test "
              "the difference of two methods' slopes:\n\n" + _fit_table(fits[metric],
                                                                       differences[metric])
              for metric in values]
  return (
      common.report_header(
          f"Batch size, {preset['protocol'].replace('_', ' ')} ({preset_name} preset)", command,
          wall_s) +
      f"Runs: {', '.join(fits['z'])} x B in {list(batch_sizes)} x {preset['seeds']} seed(s), "
      f"{budget}, MLP {tuple(preset['hidden_sizes'])}, latent {preset['latent_dim']}, one "
      f"device.  \nProbes of the mean encoding: {probes}, fitted on {preset['max_train']} "
      "training rows (`linear` on all of them), scored on the test split; z-scores per (probe, "
      "metric) over all runs.\n\n"
      "Mean z-score per batch size (over seeds):\n\n" + header + "\n".join(rows) + "\n\n"
      "Mean accuracy per batch size (over seeds), with the baselines raw pixels and their PCA at "
      "the latent size, probed once with the same probes (they do not depend on a run):\n\n"
      + accuracy_table(values, baselines, preset["latent_dim"]) + "\n\n"
      + "\n\n".join(sections) + "\n\n" + conclusion(fits["z"])
      + f"\n\n![z against B]({figure_name(preset['protocol'])})\n")


def figure_name(protocol: str) -> str:
  return "batch_size_z.png" if protocol == "fixed_examples" else f"batch_size_{protocol}_z.png"


def main(argv):
  del argv
  experiment = common.Experiment("experiments.paper.batch_size", FLAGS.preset)
  preset = preset_for(FLAGS.preset, FLAGS.protocol)
  if FLAGS.seeds:  # Fewer (or more) seeds than the preset; runs done already are reused.
    preset["seeds"] = FLAGS.seeds
  out_dir = pathlib.Path(FLAGS.out) / (f"batch_size_{FLAGS.preset}"
                                       if FLAGS.protocol == "fixed_examples"
                                       else f"batch_size_{FLAGS.protocol}_{FLAGS.preset}")
  keys = [(m, b, s) for s in range(preset["seeds"]) for m in preset["methods"]
          for b in preset["batch_sizes"]]  # Seed-major: a run cut short covers every (m, B).
  workdirs = {key: out_dir / "runs" / f"{key[0]}_b{key[1]}_seed{key[2]}" for key in keys}
  summaries = common.run_all(
      [(run_config(*key, preset, FLAGS.data_dir), workdirs[key]) for key in keys],
      FLAGS.processes, num_devices=1)
  settings = evaluate.ProbeSettings(max_train=preset["max_train"], num_seeds=1,
                                    probes=preset["probes"])
  probed, baselines = common.split_baselines(
      common.probe_runs(workdirs, settings, learned=("mean",), num_devices=1))
  baselines = baseline_accuracies(baselines)
  results = {f"{m}_b{b}_seed{s}": probed[m, b, s] for m, b, s in keys}
  scores = stats.entry_scores(results, embeddings=("mean",))
  values = {"z": {(m, b, s): scores[f"{m}_b{b}_seed{s}", "mean"]["mean_z"] for m, b, s in keys}}
  for probe in next(iter(results.values())):
    values[f"{probe} accuracy"] = {
        (m, b, s): results[f"{m}_b{b}_seed{s}"][probe]["mean"]["accuracy"]["mean"]
        for m, b, s in keys}
  fits = {metric: regressions(v) for metric, v in values.items()}
  differences = {metric: slope_differences(v) for metric, v in values.items()}
  figure = plot(values["z"], fits["z"], out_dir / figure_name(FLAGS.protocol))
  wall_s = experiment.wall_s()
  results_json = {
      **experiment.provenance(wall_s), "settings": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in preset.items()},
      "runs": [{"method": m, "batch_size": b, "seed": s, "z": values["z"][m, b, s],
                "steps": summary.get("step"), "train_wall_time_s": summary.get("wall_time_s"),
                "probe": results[f"{m}_b{b}_seed{s}"]}
               for (m, b, s), summary in zip(keys, summaries)],
      "baselines": baselines,
      "fits": {metric: {m: vars(f) for m, f in by_method.items()}
               for metric, by_method in fits.items()},
      "slope_differences": {metric: {name: vars(d) for name, d in by_name.items()}
                            for metric, by_name in differences.items()}}
  common.write_outputs(
      out_dir, results_json,
      report(FLAGS.preset, preset, values, fits, differences, baselines, wall_s,
             experiment.command),
      figures=[figure], figures_dir=FLAGS.figures)


def define_flags() -> None:
  """The shared flags (`common.define_flags`) and this script's own."""
  common.define_flags(PRESETS, processes=True, figures=True)
  flags.DEFINE_enum("protocol", "fixed_steps", list(PROTOCOLS),
                    "fixed_steps (the paper's): the same optimiser steps at every B; "
                    "fixed_examples: the same training examples at every B.")
  flags.DEFINE_integer("seeds", 0, "Seeds per (method, B); 0 = the preset's.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
