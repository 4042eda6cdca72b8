"""The JAX linear probe against scikit-learn, its weight-decay selection and standardisation."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from cmim_jax.probes import linear, suite


def overlapping_classes(num: int, seed: int, num_classes: int = 5, dim: int = 20):
  """Gaussian classes around random centres (overlapping: accuracy well below 1), features on
  different scales and correlated through a fixed random mixing."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(100).normal(size=(num_classes, dim)) * 0.5
  mixing = np.random.default_rng(101).normal(size=(dim, dim)) * np.logspace(-1, 1, dim)
  labels = rng.integers(0, num_classes, num)
  return ((centres[labels] + rng.normal(size=(num, dim))) @ mixing).astype(np.float32), labels


def test_softmax_probe_matches_sklearn_logistic_regression():
  x_train, y_train = overlapping_classes(3000, seed=0)
  x_test, y_test = overlapping_classes(2000, seed=1)
  predicted, chosen = linear.fit_predict_classes(x_train, y_train, x_test)
  assert chosen["weight_decay"] in linear.LinearSettings().weight_decays
  stats = linear.standardizer(x_train)
  reference = LogisticRegression(C=1.0 / (chosen["weight_decay"] * len(x_train)), max_iter=5000)
  reference.fit(linear.standardize(x_train, stats), y_train)
  ours = np.mean(predicted == y_test)
  theirs = reference.score(linear.standardize(x_test, stats), y_test)
  assert 0.5 < theirs < 0.95  # Neither trivial nor perfect.
  assert abs(ours - theirs) <= 0.005


def test_ridge_equals_the_closed_form_and_sklearn():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 6)).astype(np.float32)
  y = (x @ rng.normal(size=(6, 2)) + 0.3 * rng.normal(size=(400, 2)) + 5.0).astype(np.float32)
  weight_decays = np.array([1e-3, 0.5], np.float32)
  params = linear.fit_ridge(x, y, weight_decays)
  for g, weight_decay in enumerate(weight_decays):
    # sklearn's Ridge minimises sum_i ||.||^2 + alpha ||w||^2: alpha = N * weight_decay.
    reference = Ridge(alpha=float(weight_decay) * len(x)).fit(x, y)
    np.testing.assert_allclose(np.asarray(params["w"][g]), reference.coef_.T, rtol=2e-4,
                               atol=2e-5)
    np.testing.assert_allclose(np.asarray(params["b"][g]), reference.intercept_, rtol=2e-4)
    xc, yc = x - x.mean(0), y - y.mean(0)  # The normal equations by hand.
    closed = np.linalg.solve(xc.T @ xc / len(x) + weight_decay * np.eye(6), xc.T @ yc / len(x))
    np.testing.assert_allclose(np.asarray(params["w"][g]), closed, rtol=2e-4, atol=2e-5)


def test_ridge_probe_predicts_in_the_targets_units():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(300, 4))
  y = 100.0 + 30.0 * (x @ np.array([1.0, -2.0, 0.5, 0.0]))
  predicted, chosen = linear.fit_predict_values(x[:200], y[:200], x[200:])
  assert predicted.shape == (100,)
  np.testing.assert_allclose(predicted, y[200:], atol=1e-3 * np.std(y))  # Barely shrunk.
  assert chosen["weight_decay"] == min(linear.LinearSettings().ridge_weight_decays)


@pytest.mark.parametrize("kind", [suite.CLASSIFICATION, suite.REGRESSION])
def test_weight_decay_is_chosen_without_the_test_rows(kind):
  probe = suite.select_probes(kind, ["linear"])[0]
  x_train, y_train = overlapping_classes(600, seed=2)
  x_test, y_test = overlapping_classes(200, seed=3)
  if kind == suite.REGRESSION:
    y_train, y_test = x_train[:, :2] @ [1.0, -1.0] + y_train, x_test[:, :2] @ [1.0, -1.0] + y_test
  honest = suite.fit_and_score(probe, 0, x_train, y_train, x_test, y_test)
  permuted = np.random.default_rng(0).permutation(len(y_test))
  scrambled = suite.fit_and_score(probe, 0, x_train, y_train, -3.0 * x_test[permuted],
                                  y_test[permuted[::-1]])
  assert honest.chosen == scrambled.chosen
  assert honest.metrics != scrambled.metrics


def test_standardisation_uses_training_rows_only():
  x_train, y_train = overlapping_classes(800, seed=4)
  x_test, _ = overlapping_classes(300, seed=5)
  predicted, _ = linear.fit_predict_classes(x_train, y_train, x_test)
  # Each test row is predicted alone: no statistic of the other test rows enters.
  alone, _ = linear.fit_predict_classes(x_train, y_train,
                                        np.concatenate([x_test[:7], 1e3 + x_test[7:]]))
  np.testing.assert_array_equal(alone[:7], predicted[:7])
  # Per-feature units do not matter (the statistics of the training rows absorb them).
  scale, shift = np.logspace(-3, 3, x_train.shape[1]), np.linspace(-50, 50, x_train.shape[1])
  rescaled, _ = linear.fit_predict_classes(x_train * scale + shift, y_train,
                                           x_test * scale + shift)
  assert np.mean(rescaled == predicted) > 0.99
  mean, spread = linear.standardizer(np.array([[1.0, 3.0], [3.0, 3.0]]))
  np.testing.assert_array_equal(mean, [2.0, 3.0])
  np.testing.assert_array_equal(spread, [1.0, 1.0])  # The constant column keeps scale 1.


def test_validation_split_is_stratified_and_fixed():
  labels = np.repeat([0, 1, 2], [500, 300, 200])
  fit, valid = linear.validation_split(labels, 0.1, seed=0, stratify=True)
  assert len(valid) == 100 and len(fit) == 900 and not set(fit) & set(valid)
  np.testing.assert_array_equal(np.bincount(labels[valid]), [50, 30, 20])
  np.testing.assert_array_equal(valid, linear.validation_split(labels, 0.1, 0, True)[1])
