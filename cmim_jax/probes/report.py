"""Markdown tables and PNG figures of probe results and run comparisons (written atomically)."""

from __future__ import annotations

import io
import pathlib
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cmim_jax.files import write_atomic
from cmim_jax.probes import compare as compare_lib


def new_figure(**kwargs) -> Figure:
  """A figure drawn by the Agg canvas, outside pyplot: no backend is chosen and no window opens.

  `kwargs` go to `matplotlib.figure.Figure` (figsize, layout, ...); add axes with
  `figure.subplots(...)`. The figure is freed with its last reference (no `plt.close`).
  """
  figure = Figure(**kwargs)
  FigureCanvasAgg(figure)
  return figure


def save_figure(figure: Figure, path: str | pathlib.Path, dpi: int = 120) -> pathlib.Path:
  """Writes `figure` to `path` as PNG (tight bounding box), atomically."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
  return write_atomic(path, buffer.getvalue())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def _value(summary: Mapping[str, float] | None) -> str:
  if summary is None:
    return "-"
  if summary["n"] > 1:
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} (n={summary['n']})"
  return f"{summary['mean']:.4f}"


def probe_markdown(report: Mapping) -> str:
  """results.md of one run from the output of `evaluate.run_probes` (plus "wall_seconds")."""
  info, results = report["info"], report["results"]
  embeddings = list(dict.fromkeys(e for by_e in results.values() for e in by_e))
  settings = info["settings"]
  title = " ".join(f"{key} {info[key]}" for key in ("method", "data_name") if key in info)
  source = info.get("data", {}).get("source")
  if source:
    title += f" (data from {source})"
  lines = [f"# Probe results{': ' + title if title else ''}"
           f"{' (checkpoint step ' + str(info['step']) + ')' if 'step' in info else ''}", ""]
  splits = info.get("data", {}).get("splits", {})
  if splits:
    lines.append("- Data: " + ", ".join(
        f"{split} {each['rows']} rows" + (f" (SHA-256 {each['sha256'][:12]})" if each["sha256"]
                                          else "") for split, each in splits.items()) + ".")
  subsampled = [name for name, probe in info["probes"].items() if not probe.get("all_rows")]
  for evaluation in info["evaluations"]:
    if evaluation["family"] is None:
      where = "the train split, scored on the test split"
    elif evaluation.get("scored_on") == "valid":
      where = (f"train of split scheme family {evaluation['family']!r}, scored on its valid "
               "(val_ metrics)")
    else:
      where = f"train+valid of split scheme family {evaluation['family']!r}, scored on its test"
    stratified = ", stratified by label" if info["kind"] == "classification" else ""
    sampled = (f"; {', '.join(subsampled)} on a fixed subsample of {evaluation['fitted_rows']} "
               f"rows (seed 0{stratified}; max_train={settings['max_train']})"
               if subsampled and evaluation["fitted_rows"] < evaluation["train_rows"] else "")
    lines.append(f"- Fitted on the {evaluation['train_rows']} rows of {where} "
                 f"({evaluation['test_rows']} rows){sampled}.")

  def grids(selection):
    return [f"{name} {', '.join(f'{k} in {v}' for k, v in probe['grid'].items())}"
            for name, probe in info["probes"].items()
            if probe["grid"] and probe.get("selection", "cv") == selection]

  stochastic = [name for name, probe in info["probes"].items() if probe["stochastic"]]
  all_rows = [name for name, probe in info["probes"].items() if probe.get("all_rows")]
  lines += [
      "- Features standardised with the training rows' statistics (inside each CV fold too)"
      + ("; targets likewise, metrics in the original units." if info["kind"] == "regression"
         else "."),
      f"- Hyper-parameters chosen by {settings['cv_folds']}-fold cross-validation on the training "
      f"rows only: {'; '.join(grids('cv')) or 'none'}; on a held-out 10% of the training rows "
      f"(then refitted on all of them): {'; '.join(grids('validation split')) or 'none'}.",
      f"- Stochastic probes ({', '.join(stochastic) or 'none'}): mean ± std over "
      f"{settings['num_seeds']} seeds; n counts the fits pooled (seeds x split schemes). Probes "
      f"fitted on every training row whatever max_train: {', '.join(all_rows) or 'none'}.",
  ]
  if info.get("controls"):
    lines.append(f"- Controls ({', '.join(info['controls'])}): raw = the inputs, pca = their "
                 "first principal components at the latent size, random_expansion = a fixed "
                 "random gelu layer on the mean encoding at the informative width; statistics "
                 "from each fit's training rows only.")
  if info["kind"] == "binary":
    lines.append(f"- Binary tasks ({len(info.get('task_names', [])) or 'all'}): one classifier per "
                 "task, fitted on the rows labelled for it; roc_auc and pr_auc are the means over "
                 "the tasks scored (missing labels left out).")
  if "coverage_molecules" in info:
    lines.append(f"- Coverage under the pretrained vocabulary: {info['coverage_truncated']} of "
                 f"{info['coverage_molecules']} molecules cut to "
                 f"{info['coverage_max_tokens']} tokens, {info['coverage_unknown_tokens']} of "
                 f"{info['coverage_tokens']} tokens unknown.")
  for reason in info.get("skipped_tasks", []):
    lines.append(f"- Skipped: {reason}.")
  if report.get("reused"):
    lines.append(f"- Reused from an earlier run's partial results: "
                 f"{', '.join('/'.join(pair) for pair in report['reused'])}.")
  if "wall_seconds" in report:
    lines.append(f"- Wall time of the probes: {report['wall_seconds']:.1f} s.")
  lines.append("")
  rows = []
  for probe, by_embedding in results.items():
    metrics = list(dict.fromkeys(m for by_m in by_embedding.values() for m in by_m))
    if not metrics:  # Every task of every fit skipped (see the "Skipped:" lines).
      continue
    first = next(summary for by_m in by_embedding.values() for summary in by_m.values())
    fitted = (", ".join(map(str, first["train_rows"])), ", ".join(map(str, first["seeds"])))
    for metric in metrics:
      rows.append([probe, metric, *fitted] + [_value(by_embedding.get(e, {}).get(metric))
                                              for e in embeddings])
  lines.append(_table(["probe", "metric", "train rows", "seeds", *embeddings], rows))
  return "\n".join(lines)


def _signed(value: float) -> str:
  return "-" if not np.isfinite(value) else f"{value:+.3f}"


def compare_markdown(table: compare_lib.Table, comparison: Mapping,
                     geometry_by_run: Mapping[str, Mapping], figures: Sequence[str]) -> str:
  """compare.md: run summaries, per-criterion values with z-scores and ranks, geometry."""
  runs = list(comparison["per_run"])
  lines = [f"# Comparison of {', '.join(runs)}", "",
           f"Z-scores per (probe, metric) across the {len(table.entries)} (run, embedding) "
           "entries, oriented so that higher is better (RMSE negated); rank 1 is the best. "
           "Means are over every (probe, metric) below.", ""]
  if table.dropped:
    lines += ["Left out because some entry lacks them: "
              + ", ".join(f"{probe} {metric}" for probe, metric in table.dropped) + ".", ""]
  lines += ["## Runs", ""]
  lines.append(_table(["run", "mean z", "mean rank", "cells"], [
      [run, _signed(s["mean_z"]), f"{s['mean_rank']:.2f}", str(s["n"])]
      for run, s in sorted(comparison["per_run"].items(), key=lambda kv: -kv[1]["mean_z"])]))
  lines += ["## Run x embedding", ""]
  lines.append(_table(["run", "embedding", "mean z", "mean rank", "cells"], [
      [run, embedding, _signed(s["mean_z"]), f"{s['mean_rank']:.2f}", str(s["n"])]
      for (run, embedding), s in sorted(comparison["per_entry"].items(),
                                        key=lambda kv: -kv[1]["mean_z"])]))
  if table.controls:
    lines += ["## Controls (not ranked)", "",
              "Raw inputs, their PCA at the latent size and a random gelu expansion of the mean "
              "encoding at the informative width (`cmim_jax.probes.controls`); z-scores against "
              "the mean and std of the entries above, which the controls do not change.", ""]
    lines.append(_table(["run", "control", "mean z", "cells"], [
        [run, control, _signed(s["mean_z"]), str(s["n"])]
        for (run, control), s in comparison["per_control"].items()]))
  lines += ["## Per probe: value (z, rank)", ""]
  rows = []
  for c, (probe, metric) in enumerate(table.criteria):
    cells = []
    for e in range(len(table.entries)):
      value = table.values[e, c]
      cells.append("-" if not np.isfinite(value) else
                   f"{value:.4f} ({_signed(comparison['z'][e, c])}, "
                   f"#{comparison['rank'][e, c]:g})")
    for k in range(len(table.controls)):
      value = table.control_values[k, c]
      cells.append("-" if not np.isfinite(value) else
                   f"{value:.4f} ({_signed(comparison['control_z'][k, c])})")
    rows.append([probe, metric, *cells])
  lines.append(_table(["probe", "metric", *[f"{r}/{e}" for r, e in table.entries],
                       *[f"{r}/{e} (control)" for r, e in table.controls]], rows))
  if geometry_by_run:
    lines += ["## Geometry of the mean encodings", "",
              "Radius = Euclidean norm of mu(x); cosine = pairwise cosine similarity of mean "
              "encodings (mean / variance over pairs).", ""]
    rows = []
    for run, geo in geometry_by_run.items():
      row = [run, geo["split"], f"{geo['radius']['mean']:.3f}", f"{geo['radius']['std']:.3f}",
             f"{geo['cosine']['mean']:.4f}", f"{geo['cosine']['var']:.4f}"]
      for key in ("within_class", "across_class"):
        moments = geo.get(key)
        row += (["-", "-"] if moments is None else
                [f"{moments['mean']:.4f}", f"{moments['var']:.4f}"])
      rows.append(row)
    lines.append(_table(["run", "split", "radius mean", "radius std", "cos mean", "cos var",
                         "within-class cos mean", "within var", "across-class cos mean",
                         "across var"], rows))
  if figures:
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""]
  return "\n".join(lines)


def plot_comparison(comparison: Mapping, path: str | pathlib.Path) -> pathlib.Path:
  """Bar charts of mean z-score and mean rank per run, one bar per embedding."""
  per_entry = comparison["per_entry"]
  runs = list(comparison["per_run"])
  embeddings = list(dict.fromkeys(e for _, e in per_entry))
  width = 0.8 / len(embeddings)
  figure = new_figure(figsize=(max(7.0, 1.8 * len(runs) + 3), 3.8), layout="constrained")
  axes = figure.subplots(1, 2)
  for axis, key, label in ((axes[0], "mean_z", "mean z-score (higher is better)"),
                           (axes[1], "mean_rank", "mean rank (lower is better)")):
    for j, embedding in enumerate(embeddings):
      heights = [per_entry.get((run, embedding), {}).get(key, np.nan) for run in runs]
      axis.bar(np.arange(len(runs)) + (j - (len(embeddings) - 1) / 2) * width, heights, width,
               label=embedding)
    axis.set_xticks(np.arange(len(runs)), runs)
    axis.set_ylabel(label)
    axis.axhline(0.0, color="black", linewidth=0.6)
  axes[0].legend(title="embedding", fontsize="small")
  figure.suptitle("Probe comparison across runs")
  return save_figure(figure, path)


def plot_geometry(geo: Mapping, title: str, path: str | pathlib.Path) -> pathlib.Path:
  """Histograms of the latent norms and of the pairwise angles between mean encodings.

  With labels (`geo["same_class"]`), the angles of within-class and across-class pairs are drawn as
  separate densities.
  """
  figure = new_figure(figsize=(9, 3.4), layout="constrained")
  axes = figure.subplots(1, 2)
  axes[0].hist(geo["norms"], bins=60, color="tab:blue")
  axes[0].set_xlabel("||mu(x)|| (radius)")
  axes[0].set_ylabel("examples")
  bins = np.linspace(0.0, 180.0, 91)
  same = geo.get("same_class")
  if same is None:
    axes[1].hist(geo["angles"], bins=bins, color="tab:orange", density=True, label="all pairs")
  else:
    for mask, label, color in ((same, "within class", "tab:green"),
                               (~same, "across classes", "tab:red")):
      if mask.any():
        axes[1].hist(geo["angles"][mask], bins=bins, color=color, alpha=0.6, density=True,
                     label=label)
  axes[1].set_xlabel("angle between mean encodings (degrees)")
  axes[1].set_ylabel("density of pairs")
  axes[1].legend(fontsize="small")
  figure.suptitle(title)
  return save_figure(figure, path)
