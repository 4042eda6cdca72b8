"""Z-scores and ranks of runs across probes: the comparison the cMIM paper ranks methods by.

The compared *entries* are (run, embedding) pairs, e.g. ("cmim", "informative"); the *criteria* are
(probe, metric) pairs, e.g. ("knn5_cosine", "accuracy"). For each criterion, every entry's value is
oriented so that higher is better (metrics in `suite.LOWER_IS_BETTER`, i.e. RMSE, are negated),
then standardised across the entries that have it:

  z = (s - mean(s)) / std(s)      (population std over the entries; z = 0 when all are equal)
  rank = 1 for the best, ties share the average of their ranks.

Controls (`probes.controls.CONTROLS`: raw inputs, their PCA, a random expansion of the mean
encoding) are not entries: they are listed beside them (`Table.controls`), each with its values
and its z-score against the entries' mean and std, so that adding them changes no entry's z-score
or rank.

Only criteria that every entry has are compared (a probe missing from one run would otherwise
make the means cover different probes); `Table.dropped` lists the others. An entry's mean z-score
and mean rank average over all criteria; a run's over all criteria of all its embeddings. The
maths below also accepts NaN (absent) cells, which it leaves out of every mean.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
from scipy import stats

from cmim_jax.probes import controls as controls_lib
from cmim_jax.probes import suite

Entry = tuple[str, str]  # (run, embedding)
Criterion = tuple[str, str]  # (probe, metric)


@dataclasses.dataclass(frozen=True)
class Table:
  """Mean metric values: values[e, c] of entry e on criterion c."""

  entries: list[Entry]
  criteria: list[Criterion]
  values: np.ndarray  # [E, C]
  dropped: list[Criterion]  # criteria some entry lacks
  controls: list[Entry] = dataclasses.field(default_factory=list)  # (run, control) references
  control_values: np.ndarray = dataclasses.field(  # [K, C], NaN where a control lacks a criterion
      default_factory=lambda: np.zeros((0, 0)))


def metric_base(metric: str) -> str:
  """"rmse@scaffold" -> "rmse"."""
  return metric.split("@", 1)[0]


def build_table(results_by_run: Mapping[str, Mapping]) -> Table:
  """run -> probe results {probe: {embedding: {metric: {"mean", ...}}}} -> a `Table`.

  Entries, controls and criteria are listed in order of first appearance; criteria that some
  entry lacks are dropped (a control may lack one: its cell is NaN).
  """
  cells: dict[tuple[Entry, Criterion], float] = {}
  rows: dict[Entry, None] = {}
  criteria: dict[Criterion, None] = {}
  for run, results in results_by_run.items():
    for probe, by_embedding in results.items():
      for embedding, by_metric in by_embedding.items():
        for metric, summary in by_metric.items():
          rows.setdefault((run, embedding))
          if embedding not in controls_lib.CONTROLS:
            criteria.setdefault((probe, metric))
          cells[(run, embedding), (probe, metric)] = float(summary["mean"])
  entry_list = [e for e in rows if e[1] not in controls_lib.CONTROLS]
  control_list = [e for e in rows if e[1] in controls_lib.CONTROLS]
  criterion_list = list(criteria)

  def matrix(row_list):
    values = np.full((len(row_list), len(criterion_list)), np.nan)
    for i, row in enumerate(row_list):
      for j, criterion in enumerate(criterion_list):
        values[i, j] = cells.get((row, criterion), np.nan)
    return values

  values, control_values = matrix(entry_list), matrix(control_list)
  keep = np.all(np.isfinite(values), axis=0)
  return Table(entry_list, [c for c, k in zip(criterion_list, keep) if k], values[:, keep],
               [c for c, k in zip(criterion_list, keep) if not k], control_list,
               control_values[:, keep])


def oriented_values(table: Table, values: np.ndarray) -> np.ndarray:
  """values [., C] on `table`'s criteria turned into scores where higher is better:
  lower-is-better metrics negated."""
  signs = np.array([-1.0 if metric_base(metric) in suite.LOWER_IS_BETTER else 1.0
                    for _, metric in table.criteria])
  return values * signs


def oriented(table: Table) -> np.ndarray:
  """[E, C] scores of the entries where higher is better."""
  return oriented_values(table, table.values)


def zscores(scores: np.ndarray) -> np.ndarray:
  """Per column (criterion) z-scores of scores [E, C] over its finite entries; NaN stays NaN."""
  mean = np.nanmean(scores, axis=0, keepdims=True)
  std = np.nanstd(scores, axis=0, keepdims=True)
  safe_std = np.where(std > 0, std, 1.0)
  return np.where(std > 0, (scores - mean) / safe_std, np.where(np.isnan(scores), np.nan, 0.0))


def ranks(scores: np.ndarray) -> np.ndarray:
  """Per column ranks of scores [E, C], 1 = highest, ties averaged; NaN where absent."""
  out = np.full(scores.shape, np.nan)
  for column in range(scores.shape[1]):
    present = np.isfinite(scores[:, column])
    out[present, column] = stats.rankdata(-scores[present, column], method="average")
  return out


def _mean_over(rows: np.ndarray, matrix: np.ndarray) -> float:
  cells = matrix[rows]
  cells = cells[np.isfinite(cells)]
  return float(np.mean(cells)) if cells.size else float("nan")


def control_zscores(scores: np.ndarray, control_scores: np.ndarray) -> np.ndarray:
  """Z-scores [K, C] of control scores against the mean and std of the entries' scores [E, C]
  (per column, over finite entries); 0 where the entries' std is 0, NaN where absent."""
  mean = np.nanmean(scores, axis=0, keepdims=True)
  std = np.nanstd(scores, axis=0, keepdims=True)
  z = (control_scores - mean) / np.where(std > 0, std, 1.0)
  return np.where((std > 0) | np.isnan(control_scores), z, 0.0)


def compare(table: Table) -> dict:
  """Z-scores, ranks and their means per entry and per run; controls' z-scores on the side.

  Returns:
    {"z": [E, C], "rank": [E, C],
     "per_entry": {(run, embedding): {"mean_z", "mean_rank", "n"}},
     "per_run": {run: {"mean_z", "mean_rank", "n"}},
     "control_z": [K, C], "per_control": {(run, control): {"mean_z", "n"}}}
    where n counts the (criterion) cells averaged.
  """
  scores = oriented(table)
  z, rank = zscores(scores), ranks(scores)
  control_z = control_zscores(scores, oriented_values(table, table.control_values))
  per_control = {}
  for k, control in enumerate(table.controls):
    cells = control_z[k][np.isfinite(control_z[k])]
    per_control[control] = {"mean_z": float(np.mean(cells)) if cells.size else float("nan"),
                            "n": int(cells.size)}
  present = np.isfinite(scores)
  per_entry = {}
  for i, entry in enumerate(table.entries):
    rows = np.zeros(len(table.entries), bool)
    rows[i] = True
    per_entry[entry] = {"mean_z": _mean_over(rows, z), "mean_rank": _mean_over(rows, rank),
                        "n": int(present[i].sum())}
  per_run = {}
  for run in dict.fromkeys(run for run, _ in table.entries):
    rows = np.array([r == run for r, _ in table.entries])
    per_run[run] = {"mean_z": _mean_over(rows, z), "mean_rank": _mean_over(rows, rank),
                    "n": int(present[rows].sum())}
  return {"z": z, "rank": rank, "per_entry": per_entry, "per_run": per_run,
          "control_z": control_z, "per_control": per_control}
