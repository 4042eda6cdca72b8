"""Aggregation maths of the paper's experiments (pure functions, unit-tested)."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

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


def select_embeddings(results: Mapping[str, Mapping],
                      keep: Callable[[str], bool]) -> dict[str, dict]:
  """Probe results {probe: {embedding: metrics}} with only the embeddings for which `keep` holds."""
  return {probe: {e: v for e, v in by_embedding.items() if keep(e)}
          for probe, by_embedding in results.items()}


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
    results_by_run = {run: select_embeddings(results, lambda e: e in embeddings)
                      for run, results in results_by_run.items()}
  return _comparison(results_by_run)["per_entry"]


def control_scores(results_by_run: Mapping[str, Mapping]) -> dict[tuple[str, str], dict]:
  """Mean z-score of every (run, control) against the learned entries' mean and std per
  (probe, metric) (`compare.control_zscores`): where a control stands, without taking part.

  Returns:
    (run, control) -> {"mean_z", "n"} for the controls (`probes.controls.CONTROLS`) among the
    embeddings of `results_by_run` (as in `entry_scores`).
  """
  return _comparison(results_by_run)["per_control"]


def _comparison(results_by_run: Mapping[str, Mapping]) -> dict:
  table = compare_lib.build_table(results_by_run)
  if not table.criteria:
    raise ValueError("No (probe, metric) is shared by every run and embedding; probe all runs "
                     "with the same probes.")
  return compare_lib.compare(table)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Difference:
  """An estimated difference (a - b) with its 95 % CI and two-sided p-value (NaN when undefined)."""

  difference: float
  ci_low: float
  ci_high: float
  p_value: float


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
  """mean(a) - mean(b) with Welch's t 95 % CI and p (unequal variances).

  With fewer than 2 values on a side the CI and p are NaN.
  """
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  difference = float(a.mean() - b.mean())
  if len(a) < 2 or len(b) < 2:
    return Difference(difference, math.nan, math.nan, math.nan)
  return _welch_t(difference, a.var(ddof=1) / len(a), b.var(ddof=1) / len(b), len(a) - 1,
                  len(b) - 1)


def slope_difference(x_a: Sequence[float], y_a: Sequence[float], x_b: Sequence[float],
                     y_b: Sequence[float]) -> Difference:
  """slope(a) - slope(b) of two independent least-squares lines, with its 95 % CI and p.

  Equivalent to the interaction term of one regression y ~ x * group with a separate residual
  variance per group: the standard error is sqrt(se_a^2 + se_b^2) with Welch-Satterthwaite
  degrees of freedom from each fit's n - 2.
  """
  fits = []
  for x, y in ((x_a, y_a), (x_b, y_b)):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < 3:
      raise ValueError(f"A slope's standard error needs at least 3 points, got {len(x)}.")
    result = stats.linregress(x, y)
    fits.append((float(result.slope), float(result.stderr) ** 2, len(x) - 2))
  (slope_a, var_a, dof_a), (slope_b, var_b, dof_b) = fits
  return _welch_t(slope_a - slope_b, var_a, var_b, dof_a, dof_b)


def _welch_t(difference: float, var_a: float, var_b: float, dof_a: int, dof_b: int) -> Difference:
  """CI and p of `difference` = a - b from the squared standard errors of a and b and their
  degrees of freedom (Welch-Satterthwaite). Without spread the difference is exact (p 1 or 0)."""
  standard_error = math.sqrt(var_a + var_b)
  if standard_error == 0:
    return Difference(difference, difference, difference, 1.0 if difference == 0 else 0.0)
  dof = (var_a + var_b) ** 2 / (var_a ** 2 / dof_a + var_b ** 2 / dof_b)
  half_width = stats.t.ppf(0.975, dof) * standard_error
  p_value = 2 * stats.t.sf(abs(difference) / standard_error, dof)
  return Difference(difference, difference - half_width, difference + half_width, float(p_value))
