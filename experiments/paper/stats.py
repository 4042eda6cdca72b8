"""Aggregation maths of the paper's experiments (pure functions, unit-tested)."""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from cmim_jax.probes import compare as compare_lib


@dataclasses.dataclass(frozen=True)
class LinearFit:
  """Least-squares fit y = intercept + slope * x with the slope's 95 % CI and two-sided p-value."""

  slope: float
  intercept: float
  slope_ci_low: float
  slope_ci_high: float
  p_value: float
  num_points: int


def fit_line(x: Sequence[float], y: Sequence[float]) -> LinearFit:
  """Ordinary least squares of y on x; the CI uses Student's t with n - 2 degrees of freedom.

  Raises:
    ValueError: with fewer than 3 points (no residual degree of freedom for a CI).
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"x and y must be 1-D of equal length, got {x.shape} and {y.shape}.")
  if len(x) < 3:
    raise ValueError(f"A slope CI needs at least 3 points, got {len(x)}.")
  if np.ptp(x) == 0:
    raise ValueError("All x are equal: the slope is undefined; vary x (e.g. the batch size).")
  if np.ptp(y) == 0:  # A flat line fits exactly (scipy would return NaN for its p-value).
    return LinearFit(0.0, float(y[0]), 0.0, 0.0, 1.0, len(x))
  result = stats.linregress(x, y)
  half_width = stats.t.ppf(0.975, len(x) - 2) * result.stderr
  return LinearFit(float(result.slope), float(result.intercept),
                   float(result.slope - half_width), float(result.slope + half_width),
                   float(result.pvalue), len(x))


def fit_z_against_log_batch(batch_sizes: Sequence[int], z_scores: Sequence[float]) -> LinearFit:
  """Regression of z-score on log(B) (natural log), one point per (B, seed) run."""
  return fit_line([math.log(b) for b in batch_sizes], z_scores)


def entry_scores(results_by_run: Mapping[str, Mapping],
                 embeddings: Sequence[str] | None = None) -> dict[tuple[str, str], dict]:
  """Mean z-score and mean rank of every (run, embedding) across the criteria all of them share.

  Args:
    results_by_run: run name -> probe results {probe: {embedding: {metric: {"mean", ...}}}} (the
      "results" of a probe report).
    embeddings: keep only these embeddings (e.g. ("mean",) to compare methods with and without a
      decoder on equal terms); None keeps all.

  Returns:
    (run, embedding) -> {"mean_z", "mean_rank", "n"}, standardised per (probe, metric) over all
    entries (`cmim_jax.probes.compare`).
  """
  if embeddings is not None:
    results_by_run = {run: {probe: {e: v for e, v in by_embedding.items() if e in embeddings}
                            for probe, by_embedding in results.items()}
                      for run, results in results_by_run.items()}
  table = compare_lib.build_table(results_by_run)
  if not table.criteria:
    raise ValueError("No (probe, metric) is shared by every run and embedding; probe all runs "
                     "with the same probes.")
  return compare_lib.compare(table)["per_entry"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
