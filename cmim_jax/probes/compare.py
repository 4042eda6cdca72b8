"""Z-scores and ranks of runs across probes: the comparison the cMIM paper ranks methods by.

The compared *entries* are (run, embedding) pairs, e.g. ("cmim", "informative"); the *criteria* are
(probe, metric) pairs, e.g. ("knn5_cosine", "accuracy"). For each criterion, every entry's value is
oriented so that higher is better (metrics in `suite.LOWER_IS_BETTER`, i.e. RMSE, are negated),
then standardised across the entries that have it:

  z = (s - mean(s)) / std(s)      (population std over the entries; z = 0 when all are equal)
  rank = 1 for the best, ties share the average of their ranks.

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


def metric_base(metric: str) -> str:
  """"rmse@scaffold" -> "rmse"."""
  return metric.split("@", 1)[0]


def build_table(results_by_run: Mapping[str, Mapping]) -> Table:
  """run -> probe results {probe: {embedding: {metric: {"mean", ...}}}} -> a `Table`.

  Entries and criteria are listed in order of first appearance; criteria that some entry lacks
  are dropped.
  """
  cells: dict[tuple[Entry, Criterion], float] = {}
  entries: dict[Entry, None] = {}
  criteria: dict[Criterion, None] = {}
  for run, results in results_by_run.items():
    for probe, by_embedding in results.items():
      for embedding, by_metric in by_embedding.items():
        for metric, summary in by_metric.items():
          entries.setdefault((run, embedding))
          criteria.setdefault((probe, metric))
          cells[(run, embedding), (probe, metric)] = float(summary["mean"])
  entry_list, criterion_list = list(entries), list(criteria)
  values = np.full((len(entry_list), len(criterion_list)), np.nan)
  for (entry, criterion), value in cells.items():
    values[entry_list.index(entry), criterion_list.index(criterion)] = value
  keep = np.all(np.isfinite(values), axis=0)
  return Table(entry_list, [c for c, k in zip(criterion_list, keep) if k], values[:, keep],
               [c for c, k in zip(criterion_list, keep) if not k])


def oriented(table: Table) -> np.ndarray:
  """[E, C] scores where higher is better: lower-is-better metrics negated."""
  signs = np.array([-1.0 if metric_base(metric) in suite.LOWER_IS_BETTER else 1.0
                    for _, metric in table.criteria])
  return table.values * signs


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


def compare(table: Table) -> dict:
  """Z-scores, ranks and their means per entry and per run.

  Returns:
    {"z": [E, C], "rank": [E, C],
     "per_entry": {(run, embedding): {"mean_z", "mean_rank", "n"}},
     "per_run": {run: {"mean_z", "mean_rank", "n"}}}
    where n counts the (criterion) cells averaged.
  """
  scores = oriented(table)
  z, rank = zscores(scores), ranks(scores)
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
  return {"z": z, "rank": rank, "per_entry": per_entry, "per_run": per_run}
