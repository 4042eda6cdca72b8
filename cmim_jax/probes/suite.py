"""The probe suite: models fitted on frozen embeddings, and their metrics.

`linear` (softmax regression for classes, ridge for targets) is JAX, fitted full-batch on every
training row with its weight decay chosen on a held-out 10% of them (`probes.linear`); the others
are scikit-learn. Every probe standardises the features with statistics of the training rows it is
fitted on (inside each cross-validation fold too). The scikit-learn probes choose the
hyper-parameters listed in their `grid` by K-fold cross-validation on the training rows only
(stratified for classification); the test rows are never seen before scoring. Regression probes
also standardise the targets on the training rows and predict in the original units. Stochastic
probes take the seed as their `random_state` (and as the fold shuffling seed); the deterministic
ones are fitted once.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.multioutput import MultiOutputRegressor
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR, LinearSVC

from cmim_jax.errors import ConfigError, DataError
from cmim_jax.probes import linear

CLASSIFICATION = "classification"
REGRESSION = "regression"
BINARY = "binary"  # One or more 0/1 tasks with missing labels (NaN): binary and multi-label sets.
METRICS = {CLASSIFICATION: ("accuracy",), REGRESSION: ("rmse", "r2"), BINARY: ("roc_auc", "pr_auc")}
LOWER_IS_BETTER = frozenset({"rmse"})


@dataclasses.dataclass(frozen=True)
class Probe:
  """One probe.

  Attributes:
    name: its key in results, e.g. "knn5_cosine".
    kind: CLASSIFICATION, REGRESSION or BINARY (fitted per task on the task's labelled rows,
      scored by the probability of class 1).
    make_model: seed -> an unfitted scikit-learn model (it receives standardised features).
    grid: hyper-parameter name of the model -> candidate values, chosen by CV on train (by
      `fit_predict` itself when that is set).
    stochastic: whether the fit depends on the seed (then it is repeated over seeds).
    multi_output: regression only: whether the model fits targets [N, T > 1] itself (otherwise
      one model per target column).
    fit_predict: instead of `make_model`: (seed, x_train [N, F], y_train, x_test [M, F]) ->
      (predictions for x_test, chosen hyper-parameters); it standardises and selects itself.
    all_rows: fit on every training row, ignoring `max_train` (fast probes).
    default: run when no probe names are given.
  """

  name: str
  kind: str
  make_model: Callable[[int], BaseEstimator] | None = None
  grid: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
  stochastic: bool = False
  multi_output: bool = True
  fit_predict: Callable[..., tuple[np.ndarray, dict[str, Any]]] | None = None
  all_rows: bool = False
  default: bool = True

  @property
  def selection(self) -> str:
    """How its grid is searched: "validation split" (`fit_predict`) or "cv"."""
    return "validation split" if self.fit_predict is not None else "cv"


def _linear_classes(seed, x_train, y_train, x_test):
  predicted, chosen = linear.fit_predict_classes(x_train, y_train, x_test, seed)
  return predicted, {"weight_decay": chosen["weight_decay"]}


def _linear_values(seed, x_train, y_train, x_test):
  predicted, chosen = linear.fit_predict_values(x_train, y_train, x_test, seed)
  return predicted, {"weight_decay": chosen["weight_decay"]}


# The MLPs stop when the score on 10% of their training rows (held out by them) stops improving: on
# 10,000 rows this is about 3x faster than a fixed epoch budget. With very few rows (say under 500)
# that held-out score is noisy and can stop the fit early.
def _mlp_classifier(seed):
  return MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, max_iter=200,
                       random_state=seed)


def _mlp_regressor(seed):
  return MLPRegressor(hidden_layer_sizes=(256,), early_stopping=True, max_iter=500,
                      random_state=seed)


# Inverse regularisation strengths of the scikit-learn linear classifiers. On MNIST the CV picked
# C = 10 for the 16-d mean encodings (accuracy is flat in C there) and C <= 0.1 for the 512-d
# informative ones; the primal linear SVM at C = 10 on 512-d features dominates the suite's run
# time. Both are slow on all rows, so the JAX `linear` probe replaces them in the default list.
_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)

CLASSIFICATION_PROBES = (
    Probe("knn5_cosine", CLASSIFICATION,
          lambda seed: KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute")),
    Probe("knn5_euclidean", CLASSIFICATION, lambda seed: KNeighborsClassifier(n_neighbors=5)),
    Probe("linear", CLASSIFICATION, grid={"weight_decay": linear.LinearSettings().weight_decays},
          fit_predict=_linear_classes, all_rows=True),
    Probe("logistic_regression", CLASSIFICATION,
          lambda seed: LogisticRegression(max_iter=1000), grid={"C": _C_GRID}, default=False),
    Probe("mlp", CLASSIFICATION, _mlp_classifier, stochastic=True),
    # The primal solver (dual=False) is deterministic; the dual one shuffles with a seed.
    Probe("linear_svm", CLASSIFICATION, lambda seed: LinearSVC(dual=False), grid={"C": _C_GRID},
          default=False),
    # Every core: the trees do not depend on n_jobs (same seed, same forest, same predictions).
    Probe("random_forest", CLASSIFICATION,
          lambda seed: RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed),
          stochastic=True),
)

REGRESSION_PROBES = (
    Probe("knn5", REGRESSION, lambda seed: KNeighborsRegressor(n_neighbors=5)),
    Probe("linear", REGRESSION,
          grid={"weight_decay": linear.LinearSettings().ridge_weight_decays},
          fit_predict=_linear_values, all_rows=True),
    Probe("ridge", REGRESSION, lambda seed: Ridge(),
          grid={"alpha": (0.01, 0.1, 1.0, 10.0, 100.0)}, default=False),
    Probe("svr_rbf", REGRESSION, lambda seed: SVR(kernel="rbf"), grid={"C": (0.1, 1.0, 10.0)},
          multi_output=False),
    Probe("mlp", REGRESSION, _mlp_regressor, stochastic=True),
    Probe("random_forest", REGRESSION,
          lambda seed: RandomForestRegressor(n_estimators=100, n_jobs=-1, random_state=seed),
          stochastic=True),
    # Breiman's regression default (R's randomForest: mtry = p / 3 features tried per split), on
    # every core (the trees do not depend on n_jobs): on 2,048-bit ECFP4 and 3,400 rows a fit takes
    # a third of random_forest's time on one core; the CPU molecule table uses it.
    Probe("random_forest_third", REGRESSION,
          lambda seed: RandomForestRegressor(n_estimators=100, max_features=1 / 3, n_jobs=-1,
                                             random_state=seed),
          stochastic=True, default=False),
)

# Binary and multi-label tasks: one classifier per task, fitted on the rows labelled for it, whose
# probability of class 1 is scored by ROC-AUC and PR-AUC. The JAX `linear` probe predicts classes
# only, so the logistic regression takes its place.
BINARY_PROBES = (
    Probe("logistic_regression", BINARY, lambda seed: LogisticRegression(max_iter=1000),
          grid={"C": _C_GRID}),
    Probe("knn5_cosine", BINARY,
          lambda seed: KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute")),
    Probe("mlp", BINARY, _mlp_classifier, stochastic=True),
    Probe("random_forest", BINARY,
          lambda seed: RandomForestClassifier(n_estimators=100, random_state=seed),
          stochastic=True),
)

PROBES = {CLASSIFICATION: CLASSIFICATION_PROBES, REGRESSION: REGRESSION_PROBES,
          BINARY: BINARY_PROBES}


def select_probes(kind: str, names: Sequence[str] | None = None) -> tuple[Probe, ...]:
  """The probes of `kind` named, or the default ones; a ConfigError naming the valid ones for an
  unknown name."""
  available = {probe.name: probe for probe in PROBES[kind]}
  if not names:
    return tuple(probe for probe in available.values() if probe.default)
  unknown = [name for name in names if name not in available]
  if unknown:
    raise ConfigError(f"Unknown {kind} probe(s) {unknown}; choose from {sorted(available)}.")
  return tuple(available[name] for name in names)


def build_estimator(probe: Probe, seed: int, num_targets: int = 1,
                    cv_folds: int = 3) -> BaseEstimator:
  """The full estimator of `probe`: standardisation, the model, and CV over its grid."""
  model, grid = probe.make_model(seed), {f"model__{k}": v for k, v in probe.grid.items()}
  if probe.kind == REGRESSION and num_targets > 1 and not probe.multi_output:
    model = MultiOutputRegressor(model)
    grid = {f"model__estimator__{k}": v for k, v in probe.grid.items()}
  estimator = Pipeline([("standardize", StandardScaler()), ("model", model)])
  if probe.kind == REGRESSION:
    estimator = TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler())
    grid = {f"regressor__{k}": v for k, v in grid.items()}
  if not grid:
    return estimator
  splitter = KFold if probe.kind == REGRESSION else StratifiedKFold
  return GridSearchCV(estimator, grid, cv=splitter(cv_folds, shuffle=True, random_state=seed),
                      scoring="roc_auc" if probe.kind == BINARY else None, error_score="raise")


def binary_score(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
  """ROC-AUC and PR-AUC (scikit-learn's `roc_auc_score` and `average_precision_score`), each the
  mean over the tasks scored: a task counts when it has scores and both classes among its labelled
  rows; rows with a missing label (NaN) or no score (NaN) are left out of its task.

  y_true: [N, T] 0/1 labels, NaN = missing. y_score: [N, T] scores of class 1, NaN = none.
  Returns {} when no task can be scored.
  """
  roc, pr = [], []
  for labels, scores in zip(np.asarray(y_true).T, np.asarray(y_score).T):
    rows = ~np.isnan(labels) & ~np.isnan(scores)
    if len(np.unique(labels[rows])) < 2:
      continue
    roc.append(roc_auc_score(labels[rows], scores[rows]))
    pr.append(average_precision_score(labels[rows], scores[rows]))
  return {"roc_auc": float(np.mean(roc)), "pr_auc": float(np.mean(pr))} if roc else {}


def score(kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """Accuracy for classification; RMSE and R^2 (each averaged over target columns) for regression;
  ROC-AUC and PR-AUC (`binary_score`, y_pred the scores of class 1) for BINARY.

  y_true, y_pred: [N] labels, or [N] / [N, T] targets, or [N, T] binary labels and scores.
  """
  if kind == BINARY:
    return binary_score(y_true, y_pred)
  if kind == CLASSIFICATION:
    return {"accuracy": float(np.mean(y_true == y_pred))}
  y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
  y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
  residual = np.sum((y_true - y_pred) ** 2, axis=0)
  total = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
  return {"rmse": float(np.mean(np.sqrt(residual / len(y_true)))),
          "r2": float(np.mean(1.0 - residual / total))}


@dataclasses.dataclass(frozen=True)
class ProbeOutcome:
  """Test metrics of one fitted probe, its CV-chosen hyper-parameters and its wall time; for
  BINARY the tasks left out, each as "task <t>: <why>", and the test scores [M, T]."""

  metrics: dict[str, float]
  chosen: dict[str, Any]
  seconds: float
  skipped: tuple[str, ...] = ()
  predictions: np.ndarray | None = None


def one_class_problem(y_train: np.ndarray, y_test: np.ndarray) -> str | None:
  """Why a binary task cannot be fitted and scored on these labelled rows, or None: its train or
  test part holds a single class (or no labelled row)."""
  for part, labels in (("train", y_train), ("test", y_test)):
    classes = np.unique(labels)
    if len(classes) < 2:
      held = f"only class {int(classes[0])}" if len(classes) else "no labelled row"
      return f"its {part} part holds {held} ({len(labels)} rows)"
  return None


def fit_predict_binary(probe: Probe, seed: int, x_train: np.ndarray, y_train: np.ndarray,
                       x_test: np.ndarray, y_test: np.ndarray, cv_folds: int = 3
                       ) -> tuple[np.ndarray, dict[str, dict[str, Any]], list[str]]:
  """Fits `probe` per task on the rows labelled for it; scores of class 1 on its labelled test
  rows.

  Args:
    x_train [N, F], y_train [N, T] (0/1, NaN = missing), x_test [M, F], y_test [M, T].

  Returns:
    (scores float [M, T], NaN where a test row is unlabelled or its task skipped; "task<t>" ->
    the hyper-parameters chosen for it; "task <t>: <why>" per task skipped, see
    `one_class_problem`).
  """
  scores = np.full(y_test.shape, np.nan)
  chosen, skipped = {}, []
  for task in range(y_train.shape[1]):
    train_rows = ~np.isnan(y_train[:, task])
    test_rows = ~np.isnan(y_test[:, task])
    labels = y_train[train_rows, task].astype(np.int64)
    problem = one_class_problem(labels, y_test[test_rows, task])
    if problem:
      skipped.append(f"task {task}: {problem}")
      continue
    # Stratified CV needs every class in every fold: fewer folds for a rare class, none below 2.
    folds = min(cv_folds, int(np.bincount(labels).min()))
    if folds >= 2 or not probe.grid:
      estimator = build_estimator(probe, seed, cv_folds=max(folds, 2))
    else:
      estimator = Pipeline([("standardize", StandardScaler()), ("model", probe.make_model(seed))])
    estimator.fit(x_train[train_rows], labels)
    if isinstance(estimator, GridSearchCV):
      chosen[f"task{task}"] = {k.rsplit("__", 1)[-1]: v for k, v in estimator.best_params_.items()}
    scores[test_rows, task] = estimator.predict_proba(x_test[test_rows])[:, 1]
  return scores, chosen, skipped


def check_inputs(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray) -> None:
  """A DataError unless the rows of features and labels/targets match, there is a training and a
  test row, the feature widths agree and every feature is finite."""
  for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    if np.ndim(x) != 2 or len(x) != len(y) or not len(x):
      raise DataError(f"The {split} features have shape {np.shape(x)} but there are {len(y)} "
                      f"{split} labels/targets; a probe needs [N, F] features with one label or "
                      "target row per feature row, N >= 1. Re-embed with `experiments.embed`.")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
      raise DataError(f"{int(bad.sum())} of {len(x)} {split} feature rows hold NaN or inf (first: "
                      f"row {int(np.argmax(bad))}); the embeddings are broken: re-embed from a "
                      "checkpoint with finite parameters.")
  if x_train.shape[1] != x_test.shape[1]:
    raise DataError(f"Train features have {x_train.shape[1]} columns, test features "
                    f"{x_test.shape[1]}; embed both splits with the same checkpoint.")


def fit_and_score(probe: Probe, seed: int, x_train: np.ndarray, y_train: np.ndarray,
                  x_test: np.ndarray, y_test: np.ndarray, cv_folds: int = 3) -> ProbeOutcome:
  """Fits `probe` on (x_train [N, F], y_train [N] or [N, T]) and scores it on the test rows."""
  check_inputs(x_train, y_train, x_test, y_test)
  start = time.perf_counter()
  if probe.kind == BINARY:
    scores, chosen, skipped = fit_predict_binary(probe, seed, x_train, y_train, x_test, y_test,
                                                 cv_folds)
    return ProbeOutcome(binary_score(y_test, scores), chosen, time.perf_counter() - start,
                        tuple(skipped), scores)
  if probe.kind == REGRESSION and y_train.ndim == 2 and y_train.shape[1] == 1:
    y_train, y_test = y_train[:, 0], y_test[:, 0]
  if probe.fit_predict is not None:
    predicted, chosen = probe.fit_predict(seed, x_train, y_train, x_test)
  else:
    num_targets = 1 if y_train.ndim == 1 else y_train.shape[1]
    estimator = build_estimator(probe, seed, num_targets, cv_folds).fit(x_train, y_train)
    chosen = {}
    if isinstance(estimator, GridSearchCV):
      chosen = {k.rsplit("__", 1)[-1]: v for k, v in estimator.best_params_.items()}
    predicted = estimator.predict(x_test)
  metrics = score(probe.kind, y_test, predicted)
  return ProbeOutcome(metrics, chosen, time.perf_counter() - start)
