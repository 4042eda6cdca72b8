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


def _results(accuracy_by_embedding):
  """Probe results of one run: {probe: {embedding: {"accuracy": {"mean": a}}}}."""
  return {probe: {e: {"accuracy": {"mean": a[i]}} for e, a in accuracy_by_embedding.items()}
          for i, probe in enumerate(("knn5_cosine", "logistic_regression"))}


def test_entry_scores_standardise_each_criterion_and_filter_embeddings():
  results = {"a": _results({"mean": (0.9, 0.8), "informative": (0.7, 0.9)}),
             "b": _results({"mean": (0.5, 0.6)})}
  scores = stats.entry_scores(results)
  knn = np.array([0.9, 0.7, 0.5])
  logreg = np.array([0.8, 0.9, 0.6])
  expected_z = ((knn - knn.mean()) / knn.std() + (logreg - logreg.mean()) / logreg.std()) / 2
  got = [scores[e]["mean_z"] for e in (("a", "mean"), ("a", "informative"), ("b", "mean"))]
  np.testing.assert_allclose(got, expected_z)
  assert scores["a", "mean"]["mean_rank"] == pytest.approx(1.5)  # Ranks 1 (knn) and 2 (logreg).
  only_mean = stats.entry_scores(results, embeddings=("mean",))
  assert set(only_mean) == {("a", "mean"), ("b", "mean")}
  assert only_mean["a", "mean"]["mean_z"] == pytest.approx(1.0)  # Two entries: z = +-1.
  with pytest.raises(ValueError, match="same probes"):
    stats.entry_scores({"a": _results({"mean": (0.9, 0.8)}),
                        "b": {"mlp": {"mean": {"accuracy": {"mean": 0.5}}}}})


def test_flat_and_degenerate_fits():
  flat = stats.fit_z_against_log_batch([2, 10, 50], [0.5, 0.5, 0.5])
  assert (flat.slope, flat.slope_ci_low, flat.slope_ci_high, flat.p_value) == (0, 0, 0, 1)
  with pytest.raises(ValueError, match="All x are equal"):
    stats.fit_line([1, 1, 1], [1, 2, 3])


def test_mean_std_uses_the_sample_std():
  assert stats.mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
  assert stats.mean_std([4.0]) == (4.0, 0.0)


def test_batch_size_regressions_recover_a_planted_slope():
  from experiments.paper import batch_size  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  z = {}
  for b in (2, 10, 50, 200, 1000):
    for seed in range(3):
      z["cmim", b, seed] = 0.1 + rng.normal(0, 0.01)
      z["infonce", b, seed] = 1.0 + 0.5 * math.log(b) + rng.normal(0, 0.01)
  fits = batch_size.regressions(z)
  assert fits["cmim"].slope_ci_low < 0 < fits["cmim"].slope_ci_high
  assert fits["infonce"].slope == pytest.approx(0.5, abs=0.01) and fits["infonce"].p_value < 1e-6
  assert fits["infonce"].num_points == 15
  text = batch_size.conclusion(fits)
  assert "cmim shows no significant trend" in text and "infonce improves" in text


def test_mnist_table_aggregates_over_seeds():
  from experiments.paper import mnist_table  # pylint: disable=g-import-not-at-top
  results = {("cmim", 0): _results({"mean": (0.9, 0.8), "informative": (0.95, 0.9)}),
             ("cmim", 1): _results({"mean": (0.7, 0.8), "informative": (0.95, 0.9)}),
             ("infonce", 0): _results({"mean": (0.5, 0.6)}),
             ("infonce", 1): _results({"mean": (0.5, 0.6)})}
  summaries = {("cmim", 0): {"test_reconstruction_loss": 70.0},
               ("cmim", 1): {"test_reconstruction_loss": 80.0}, ("infonce", 0): {},
               ("infonce", 1): {}}
  table = mnist_table.aggregate(results, summaries)
  assert table["cmim"]["mean"]["knn5_cosine/accuracy"] == (pytest.approx(0.8),
                                                           pytest.approx(math.sqrt(0.02)))
  assert table["cmim"]["reconstruction_loss"] == (75.0, pytest.approx(math.sqrt(50)))
  assert "reconstruction_loss" not in table["infonce"] and "informative" not in table["infonce"]
  z_sum = sum(table[m][e]["mean_z"][0] * 2 for m in table for e in table[m]
              if e != "reconstruction_loss")
  assert z_sum == pytest.approx(0.0, abs=1e-9)  # z-scores are centred over all entries.
  markdown = mnist_table.markdown_table(table)
  assert markdown.index("| cmim | informative |") < markdown.index("| infonce | mean |")
  assert "- (no decoder)" in markdown


def test_welch_difference_matches_scipy():
  a, b = [0.91, 0.93, 0.92, 0.95], [0.88, 0.90, 0.87]
  difference = stats.welch_difference(a, b)
  reference = scipy_stats.ttest_ind(a, b, equal_var=False)
  assert difference.difference == pytest.approx(np.mean(a) - np.mean(b))
  assert difference.p_value == pytest.approx(reference.pvalue)
  interval = reference.confidence_interval(0.95)
  assert (difference.ci_low, difference.ci_high) == pytest.approx((interval.low, interval.high))
  single = stats.welch_difference([0.9], b)
  assert single.difference == pytest.approx(0.9 - np.mean(b)) and math.isnan(single.ci_low)
  exact = stats.welch_difference([1.0, 1.0], [1.0, 1.0])
  assert (exact.ci_low, exact.ci_high, exact.p_value) == (0.0, 0.0, 1.0)


def test_slope_difference_is_the_interaction_of_a_joint_fit():
  rng = np.random.default_rng(1)
  x = np.log([2, 5, 10, 50, 100, 200, 500, 1000] * 3)
  y_a = 0.5 * x + rng.normal(0, 0.3, len(x))
  y_b = -0.2 * x + rng.normal(0, 0.3, len(x))
  difference = stats.slope_difference(x, y_a, x, y_b)
  assert difference.difference == pytest.approx(
      stats.fit_line(x, y_a).slope - stats.fit_line(x, y_b).slope)
  assert difference.ci_low > 0 and difference.p_value < 1e-3  # 0.7 apart, well resolved.
  # Equal residual variances and designs: the CI matches the pooled interaction regression.
  design = np.column_stack([np.ones(2 * len(x)), np.tile(x, 2), np.repeat([0, 1], len(x)),
                            np.concatenate([np.zeros(len(x)), x])])
  y = np.concatenate([y_a, y_b])
  coefficients, residual, *_ = np.linalg.lstsq(design, y, rcond=None)
  sigma2 = residual[0] / (len(y) - 4)
  se = math.sqrt(sigma2 * np.linalg.inv(design.T @ design)[3, 3])
  assert -coefficients[3] == pytest.approx(difference.difference)
  assert (difference.ci_high - difference.difference) == pytest.approx(
      scipy_stats.t.ppf(0.975, len(y) - 4) * se, rel=0.1)
  same = stats.slope_difference(x, y_a, x, y_a + 1.0)
  assert same.difference == pytest.approx(0.0, abs=1e-12) and same.p_value > 0.99
