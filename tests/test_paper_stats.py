"""The aggregation maths of the paper's experiments."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments.paper import stats


def test_fit_line_recovers_an_exact_line_with_zero_width_ci():
  fit = stats.fit_line([0, 1, 2, 3], [1.0, 3.0, 5.0, 7.0])
  assert fit.slope == pytest.approx(2.0) and fit.intercept == pytest.approx(1.0)
  assert fit.slope_ci_low == pytest.approx(2.0) and fit.slope_ci_high == pytest.approx(2.0)
  assert fit.p_value < 1e-6 and fit.num_points == 4


def test_fit_line_ci_matches_the_textbook_formula():
  x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
  y = np.array([2.1, 3.9, 6.2, 7.8, 10.1])
  fit = stats.fit_line(x, y)
  slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean())**2)
  residuals = y - (y.mean() + slope * (x - x.mean()))
  stderr = math.sqrt(np.sum(residuals**2) / 3 / np.sum((x - x.mean())**2))
  t = scipy_stats.t.ppf(0.975, 3)
  assert fit.slope == pytest.approx(slope)
  assert fit.slope_ci_low == pytest.approx(slope - t * stderr)
  assert fit.slope_ci_high == pytest.approx(slope + t * stderr)
  p = 2 * scipy_stats.t.sf(abs(slope / stderr), 3)
  assert fit.p_value == pytest.approx(p)


def test_flat_noise_gives_a_ci_that_contains_zero():
  rng = np.random.default_rng(0)
  batch_sizes = [2, 5, 10, 50, 100, 200, 500, 1000] * 3
  fit = stats.fit_z_against_log_batch(batch_sizes, rng.normal(0, 1, len(batch_sizes)))
  assert fit.slope_ci_low < 0 < fit.slope_ci_high
  assert fit.p_value > 0.05


def test_too_few_points_and_bad_shapes_raise():
  with pytest.raises(ValueError, match="at least 3 points"):
    stats.fit_line([1, 2], [1, 2])
  with pytest.raises(ValueError, match="equal length"):
    stats.fit_line([1, 2, 3], [1, 2])
