"""Aggregation maths of the paper's experiments (pure functions, unit-tested)."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats


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
  result = stats.linregress(x, y)
  half_width = stats.t.ppf(0.975, len(x) - 2) * result.stderr
  return LinearFit(float(result.slope), float(result.intercept),
                   float(result.slope - half_width), float(result.slope + half_width),
                   float(result.pvalue), len(x))


def fit_z_against_log_batch(batch_sizes: Sequence[int], z_scores: Sequence[float]) -> LinearFit:
  """Regression of z-score on log(B) (natural log), one point per (B, seed) run."""
  return fit_line([math.log(b) for b in batch_sizes], z_scores)
