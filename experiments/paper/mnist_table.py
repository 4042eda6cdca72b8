"""Experiment 3: the seven methods on MNIST (and Fashion-MNIST), ranked by probe z-scores.

  python -m experiments.paper.mnist_table --preset=smoke|cpu|full --out=runs/paper \
      [--data_dir=../shared/data/mnist] [--fashion_data_dir=DIR] [--processes=1]

Trains every method of the preset for several seeds, probes the mean and the informative embedding
of each run (InfoNCE has no decoder, so no informative embedding), and standardises every
(probe, metric) over all (run, embedding) entries of the data set (`cmim_jax.probes.compare`).
The table gives, per method and embedding, the mean z-score and mean rank (mean +- std over
seeds) with each probe's accuracy, and the test reconstruction loss (-log p(x|z), nats) of the
methods with a decoder. A second table per data set holds the references, with the same probes
and not ranked (`cmim_jax.probes.controls`): the raw pixels and their PCA at the latent size
(functions of the inputs alone, probed once per data set, from the first run's files), and per
method with an informative embedding the capacity control random_expansion (a fixed random
non-linear map of the mean encoding to the informative embedding's width), each with its mean
z-score against the learned entries. Fashion-MNIST is run when --fashion_data_dir names a folder
with its IDX files; otherwise the report says it was not run. Writes
OUT/mnist_table_<preset>/{report.md, results.json}.
"""

from __future__ import annotations

import collections
import pathlib

from absl import flags

from cmim_jax.probes import controls, evaluate
from experiments import cli
from experiments.configs import fashion_mnist as fashion_config
from experiments.configs import mnist as mnist_config
from experiments.paper import common, stats

ALL_METHODS = ("cmim", "cmim_sum", "mim", "vae", "cvae", "infonce", "infonce_x")
FLAGS = flags.FLAGS
PRESETS = {
    # Seconds: two methods (one with, one without a decoder), one seed, a tiny MLP.
    "smoke": dict(methods=("cmim", "infonce"), seeds=1, num_steps=20, batch_size=32,
                  hidden_sizes=(32,), latent_dim=8, temperature=0.1, probes=("knn5_cosine",),
                  max_train=200),
    # A 2-core CPU in about half an hour: a small MLP, 1,000 steps of 128 (2.1 epochs), the
    # config's D = 16 and τ = 1; the JAX linear probe on all 60,000 training rows (seconds per
    # embedding) and the two KNN probes on 2,000 of them.
    "cpu": dict(methods=ALL_METHODS, seeds=3, num_steps=1000, batch_size=128,
                hidden_sizes=(256,), latent_dim=16, temperature=1.0,
                probes=("linear", "knn5_cosine", "knn5_euclidean"), max_train=2000),
    # A GPU: the default config (10,000 steps, MLP 512-512, D = 16, τ = 1), the default
    # classification suite.
    "full": dict(methods=ALL_METHODS, seeds=3, num_steps=10000, batch_size=128,
                 hidden_sizes=(512, 512), latent_dim=16, temperature=1.0, probes=None,
                 max_train=10000),
}

CONFIGS = {"mnist": mnist_config, "fashion_mnist": fashion_config}


def run_config(data_name: str, data_dir: str, method: str, seed: int, preset: dict):
  config = CONFIGS[data_name].get_config()
  config.loss.method = method
  config.seed = seed
  config.data.data_dir = data_dir
  config.data.batch_size = preset["batch_size"]
  config.model.hidden_sizes = preset["hidden_sizes"]
  config.model.latent_dim = preset["latent_dim"]
  config.loss.temperature = preset["temperature"]  # cMIM's, cMIM-Σ's and cVAE's; InfoNCE's stays.
  config.train.num_steps = preset["num_steps"]
  config.train.log_every_steps = max(1, preset["num_steps"] // 10)
  config.checkpoint.every_steps = preset["num_steps"]
  config.checkpoint.max_to_keep = 1
  return config


def aggregate(results_by_run: dict[tuple[str, int], dict],
              summaries: dict[tuple[str, int], dict]) -> dict[str, dict[str, dict]]:
  """Per method and embedding: mean z, mean rank and probe metrics, each as (mean, std) over seeds.

  Only the learned embeddings are entries: controls in the results are skipped (see
  `controls_table`), and change no z-score or rank.

  Args:
    results_by_run: (method, seed) -> probe results {probe: {embedding: {metric: {"mean"}}}}.
    summaries: (method, seed) -> the run's summary.json (for test_reconstruction_loss).

  Returns:
    {method: {embedding: {"mean_z": (m, s), "mean_rank": (m, s), "<probe>/<metric>": (m, s)},
              "reconstruction_loss": (m, s) or absent}}
  """
  scores = stats.entry_scores(_named(results_by_run))
  collected = collections.defaultdict(lambda: collections.defaultdict(list))
  for (method, seed), results in results_by_run.items():
    learned = stats.select_embeddings(results, lambda e: e not in controls.CONTROLS)
    _collect_metrics(collected, method, learned)
    for embedding in {e for by_embedding in learned.values() for e in by_embedding}:
      entry = scores[f"{method}_seed{seed}", embedding]
      collected[method, embedding]["mean_z"].append(entry["mean_z"])
      collected[method, embedding]["mean_rank"].append(entry["mean_rank"])
  table: dict[str, dict] = {}
  for (method, embedding), values in collected.items():
    table.setdefault(method, {})[embedding] = {k: stats.mean_std(v) for k, v in values.items()}
  for method in table:
    losses = [summaries[m, s]["test_reconstruction_loss"] for m, s in summaries
              if m == method and "test_reconstruction_loss" in summaries[m, s]]
    if losses:
      table[method]["reconstruction_loss"] = stats.mean_std(losses)
  return table


def _named(results_by_run: dict[tuple[str, int], dict]) -> dict[str, dict]:
  """(method, seed) keys -> the run names "<method>_seed<seed>" of the z-score tables."""
  return {f"{m}_seed{s}": r for (m, s), r in results_by_run.items()}


def _collect_metrics(collected: dict, method: str, results: dict) -> None:
  """Appends each (embedding, probe/metric) mean of one run to collected[method, embedding]."""
  for probe, by_embedding in results.items():
    for embedding, by_metric in by_embedding.items():
      for metric, summary in by_metric.items():
        collected[method, embedding][f"{probe}/{metric}"].append(summary["mean"])


def controls_table(results_by_run: dict[tuple[str, int], dict],
                   baselines: dict[str, dict]) -> dict[str, dict]:
  """The references beside the ranked table: baselines once, capacity controls per method.

  Each cell's "mean_z" is the control's mean z-score against the learned entries of the data
  set (`stats.control_scores`), which it does not join.

  Args:
    results_by_run: (method, seed) -> probe results, holding "random_expansion" for the runs
      with an informative embedding (as `common.probe_runs` probes them).
    baselines: {probe: {"raw" / "pca": {metric: {"mean"}}}}, probed once for the data set
      (`common.split_baselines`).

  Returns:
    {"raw": {"mean_z": z, "<probe>/<metric>": value}, "pca": {...} (one probing, no std),
     "random_expansion": {method: {"mean_z": (m, s), "<probe>/<metric>": (m, s)}} over seeds}
  """
  scores = stats.control_scores({**_named(results_by_run), "inputs": baselines})
  table: dict[str, dict] = {}
  for name in common.BASELINES:
    cells = {f"{probe}/{metric}": summary["mean"] for probe, by_embedding in baselines.items()
             for metric, summary in by_embedding.get(name, {}).items()}
    if cells:
      table[name] = {"mean_z": scores["inputs", name]["mean_z"], **cells}
  collected = collections.defaultdict(lambda: collections.defaultdict(list))
  for (method, seed), results in results_by_run.items():
    expansion = stats.select_embeddings(results, lambda e: e == controls.RANDOM_EXPANSION)
    _collect_metrics(collected, method, expansion)
    if (f"{method}_seed{seed}", controls.RANDOM_EXPANSION) in scores:
      collected[method, controls.RANDOM_EXPANSION]["mean_z"].append(
          scores[f"{method}_seed{seed}", controls.RANDOM_EXPANSION]["mean_z"])
  table[controls.RANDOM_EXPANSION] = {
      method: {k: stats.mean_std(v) for k, v in values.items()}
      for (method, _), values in collected.items()}
  return table


def controls_markdown(table: dict[str, dict], latent_dim: int) -> str:
  """The references' table, same probe columns as `markdown_table`, in a fixed order."""
  expansions = table[controls.RANDOM_EXPANSION]
  rows = [table[name] for name in common.BASELINES if name in table] + list(expansions.values())
  metrics = sorted({k for cells in rows for k in cells if "/" in k})
  described = {controls.RAW: "raw pixels (the inputs, flattened)",
               controls.PCA: f"PCA of the pixels to the latent size ({latent_dim})"}
  lines = ["| control | of | mean z vs. learned (not ranked) | " + " | ".join(metrics) + " |",
           "|" + " --- |" * (len(metrics) + 3)]
  for name in common.BASELINES:
    if name in table:
      lines.append(f"| {name} | {described[name]} | {table[name]['mean_z']:+.2f} | "
                   + " | ".join(f"{table[name][m]:.4f}" if m in table[name] else "-"
                                for m in metrics) + " |")
  for method, cells in expansions.items():
    lines.append(f"| {controls.RANDOM_EXPANSION} | {method}'s mean encoding, to its informative "
                 f"width | {cells['mean_z'][0]:+.2f} +- {cells['mean_z'][1]:.2f} | "
                 + " | ".join(f"{cells[m][0]:.4f}" if m in cells else "-" for m in metrics)
                 + " |")
  return "\n".join(lines)


def mlp_note(probes) -> str:
  """Where the other capacity control, an MLP probe on the mean encoding, is found."""
  if probes is None or "mlp" in probes:
    return ("The other capacity control, an MLP on the mean encoding, is the `mlp` column of "
            "the mean rows above.")
  return ("The other capacity control, an MLP on the mean encoding, is not in this preset's "
          "probes (cost): run `python -m experiments.probe --workdir=RUN --probes=mlp` on a run.")


def markdown_table(table: dict[str, dict]) -> str:
  """Rows (method, embedding) sorted by mean z, best first."""
  rows = [(method, embedding, cells) for method, by_embedding in table.items()
          for embedding, cells in by_embedding.items() if embedding != "reconstruction_loss"]
  rows.sort(key=lambda row: -row[2]["mean_z"][0])
  metrics = sorted({k for _, _, cells in rows for k in cells if "/" in k})
  lines = ["| method | embedding | mean z | mean rank | " + " | ".join(metrics)
           + " | test recon. loss (nats) |", "|" + " --- |" * (len(metrics) + 5)]
  for method, embedding, cells in rows:
    loss = table[method].get("reconstruction_loss")
    lines.append(
        f"| {method} | {embedding} | {cells['mean_z'][0]:+.2f} +- {cells['mean_z'][1]:.2f} | "
        f"{cells['mean_rank'][0]:.1f} | "
        + " | ".join(f"{cells[m][0]:.4f}" if m in cells else "-" for m in metrics)
        + f" | {f'{loss[0]:.1f} +- {loss[1]:.1f}' if loss else '- (no decoder)'} |")
  return "\n".join(lines)


def main(argv):
  del argv
  experiment = common.Experiment("experiments.paper.mnist_table", FLAGS.preset)
  preset = PRESETS[FLAGS.preset]
  out_dir = pathlib.Path(FLAGS.out) / f"mnist_table_{FLAGS.preset}"
  datasets = {"mnist": FLAGS.data_dir}
  if FLAGS.fashion_data_dir:
    datasets["fashion_mnist"] = FLAGS.fashion_data_dir
  # The embeddings of each run are chosen by `common.probe_runs` (learned, then controls).
  settings = evaluate.ProbeSettings(max_train=preset["max_train"], num_seeds=1,
                                    probes=preset["probes"])
  keys = [(m, s) for m in preset["methods"] for s in range(preset["seeds"])]
  tables, control_tables, sections = {}, {}, []
  for data_name, data_dir in datasets.items():
    workdirs = {key: out_dir / data_name / f"{key[0]}_seed{key[1]}" for key in keys}
    summaries = dict(zip(keys, common.run_all(
        [(run_config(data_name, data_dir, *key, preset), workdirs[key]) for key in keys],
        FLAGS.processes)))
    results, baselines = common.split_baselines(common.probe_runs(workdirs, settings))
    tables[data_name] = aggregate(results, summaries)
    control_tables[data_name] = controls_table(results, baselines)
    sources = sorted({s.get("data_source", "?") for s in summaries.values()})
    sections.append(
        f"## {data_name}\n\nData: {', '.join(sources)}.\n\n" + markdown_table(tables[data_name])
        + "\n\n### Baselines and controls (references, not ranked)\n\n"
        + controls_markdown(control_tables[data_name], preset["latent_dim"]) + "\n\n"
        + mlp_note(preset["probes"]))
  if "fashion_mnist" not in datasets:
    sections.append("## fashion_mnist\n\nNot run: no --fashion_data_dir was given (Fashion-MNIST "
                    "has no offline fallback).")
  wall_s = experiment.wall_s()
  probes = ", ".join(preset["probes"]) if preset["probes"] else "the full classification suite"
  common.write_outputs(out_dir, {
      **experiment.provenance(wall_s), "settings": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in preset.items()},
      "tables": tables, "controls": control_tables},
      common.report_header(f"Seven methods on MNIST ({FLAGS.preset} preset)", experiment.command,
                           wall_s) +
      f"Runs: {len(preset['methods'])} methods x {preset['seeds']} seed(s), "
      f"{preset['num_steps']} steps of {preset['batch_size']}, MLP "
      f"{tuple(preset['hidden_sizes'])}, latent {preset['latent_dim']}.  \n"
      f"Probes: {probes}, fitted on {preset['max_train']} training rows (`linear`: on every "
      "training row), scored on the test "
      "split. z-scores and ranks per (probe, metric) over every (run, embedding) of the data "
      "set; +- is the std over seeds. The controls are scored against those z-scores without "
      "joining them; raw and pca are probed once per data set.\n\n" + "\n\n".join(sections) + "\n")


def define_flags() -> None:
  """The shared flags (`common.define_flags`) and this script's own."""
  common.define_flags(PRESETS, processes=True)
  flags.DEFINE_string(
      "fashion_data_dir", "", "Fashion-MNIST IDX folder; '' = skip Fashion-MNIST.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
