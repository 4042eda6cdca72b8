"""Probe suite, z-score / rank maths, geometry diagnostics and embedding files: synthetic data."""

import dataclasses
import json

import numpy as np
import pytest

from cmim_jax import errors
from cmim_jax.embedding import files as embedding_files
from cmim_jax.probes import compare, controls, evaluate, geometry, suite, workflows


def blobs(num: int, seed: int, separation: float = 12.0, num_classes: int = 3, dim: int = 6):
  """Gaussian classes (unit variance) whose centres are `separation` apart on distinct axes."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, num)
  centres = separation * np.eye(num_classes, dim)
  return (centres[labels] + rng.normal(size=(num, dim))).astype(np.float32), labels


def linear_data(num: int, seed: int, num_targets: int = 1, noise: float = 0.05):
  """x ~ N(0, I) [num, 3]; y = x @ w + noise [num, T] with a fixed w."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, 3)).astype(np.float32)
  w = np.array([[2.0, -1.0], [1.0, 0.5], [-0.5, 2.0]])[:, :num_targets]
  return x, x @ w + noise * rng.normal(size=(num, num_targets))


# -- probes with known answers --------------------------------------------------------------------


@pytest.mark.parametrize("probe", suite.CLASSIFICATION_PROBES, ids=lambda p: p.name)
def test_classification_probe_separates_separable_classes(probe):
  # The MLP holds out 10% of its rows for early stopping, which needs a few hundred rows.
  x_train, y_train = blobs(600 if probe.name == "mlp" else 150, seed=0)
  x_test, y_test = blobs(90, seed=1)
  outcome = suite.fit_and_score(probe, 0, x_train, y_train, x_test, y_test)
  assert outcome.metrics["accuracy"] >= (0.97 if probe.name == "mlp" else 1.0)
  assert set(outcome.chosen) == set(probe.grid)


@pytest.mark.parametrize("probe", suite.CLASSIFICATION_PROBES, ids=lambda p: p.name)
def test_classification_probe_is_at_chance_without_signal(probe):
  x_train, _ = blobs(150, seed=0)
  x_test, _ = blobs(300, seed=1)
  rng = np.random.default_rng(2)
  outcome = suite.fit_and_score(probe, 0, x_train, rng.integers(0, 3, 150), x_test,
                                rng.integers(0, 3, 300))
  assert outcome.metrics["accuracy"] < 0.5  # Chance is 1/3.


# Local averagers (KNN, forests, an RBF kernel) follow a linear trend less closely than the linear
# and MLP probes, and not beyond the training range.
# random_forest_third tries one of the 3 features per split here (max_features = 1/3).
_MIN_R2 = {"knn5": 0.9, "random_forest": 0.9, "random_forest_third": 0.8, "svr_rbf": 0.9}


@pytest.mark.parametrize("num_targets", [1, 2])
@pytest.mark.parametrize("probe", suite.REGRESSION_PROBES, ids=lambda p: p.name)
def test_regression_probe_fits_a_linear_target(probe, num_targets):
  x_train, y_train = linear_data(300, seed=0, num_targets=num_targets)
  x_test, y_test = linear_data(100, seed=1, num_targets=num_targets)
  outcome = suite.fit_and_score(probe, 0, x_train, y_train, x_test, y_test)
  assert outcome.metrics["r2"] > _MIN_R2.get(probe.name, 0.98)
  # RMSE is in the targets' units (std sqrt(5.25) = 2.3 per column), so R^2 pins it down.
  std = np.sqrt(5.25)
  assert outcome.metrics["rmse"] == pytest.approx(
      std * np.sqrt(1.0 - outcome.metrics["r2"]), rel=0.15)


def test_score_by_hand():
  metrics = suite.score(suite.REGRESSION, np.array([1.0, 2.0, 3.0, 4.0]),
                        np.array([1.0, 2.0, 3.0, 5.0]))
  assert metrics["rmse"] == pytest.approx(0.5)  # sqrt(1 / 4)
  assert metrics["r2"] == pytest.approx(1.0 - 1.0 / 5.0)  # SS_res = 1, SS_tot = 5
  two = suite.score(suite.REGRESSION, np.array([[0.0, 0.0], [2.0, 4.0]]),
                    np.array([[1.0, 0.0], [2.0, 4.0]]))
  assert two["rmse"] == pytest.approx((np.sqrt(0.5) + 0.0) / 2)  # averaged over target columns
  assert two["r2"] == pytest.approx(((1.0 - 1.0 / 2.0) + 1.0) / 2)
  assert suite.score(suite.CLASSIFICATION, np.array([0, 1, 2, 2]),
                     np.array([0, 1, 1, 2]))["accuracy"] == 0.75


@pytest.mark.parametrize("probe_name", ["logistic_regression", "linear_svm", "linear"])
def test_hyper_parameters_are_chosen_on_train_only(probe_name):
  probe = suite.select_probes(suite.CLASSIFICATION, [probe_name])[0]
  x_train, y_train = blobs(150, seed=0, separation=2.0)
  x_test, y_test = blobs(90, seed=1, separation=2.0)
  honest = suite.fit_and_score(probe, 0, x_train, y_train, x_test, y_test)
  scrambled = suite.fit_and_score(probe, 0, x_train, y_train, -x_test[::-1], y_test)
  assert honest.chosen == scrambled.chosen
  assert set(honest.chosen) == set(probe.grid)
  assert all(value in probe.grid[name] for name, value in honest.chosen.items())


def test_features_are_standardised_inside_the_probe():
  probe = suite.select_probes(suite.CLASSIFICATION, ["knn5_euclidean"])[0]
  x_train, y_train = blobs(150, seed=0, separation=3.0)
  x_test, y_test = blobs(90, seed=1, separation=3.0)
  scale = np.array([1e3, 1e-3, 1.0, 1.0, 5.0, 1.0], np.float32)  # Per-feature units.
  plain = suite.fit_and_score(probe, 0, x_train, y_train, x_test, y_test)
  rescaled = suite.fit_and_score(probe, 0, x_train * scale, y_train, x_test * scale, y_test)
  assert plain.metrics == rescaled.metrics


def test_select_probes_rejects_unknown_names():
  with pytest.raises(ValueError, match="knn5_cosine"):
    suite.select_probes(suite.CLASSIFICATION, ["svm_rbf"])


# -- running the suite on embedding files ---------------------------------------------------------


def test_subsample_is_stratified_fixed_and_sorted():
  labels = np.repeat([0, 1, 2, 3], [400, 300, 200, 100])
  rows = np.arange(1000)
  kept = evaluate.subsample(rows, labels, 100, suite.CLASSIFICATION)
  assert len(kept) == 100 and np.all(np.diff(kept) > 0)
  np.testing.assert_array_equal(np.bincount(labels[kept]), [40, 30, 20, 10])
  np.testing.assert_array_equal(kept, evaluate.subsample(rows, labels, 100, suite.CLASSIFICATION))
  assert evaluate.subsample(rows, labels, None, suite.CLASSIFICATION) is rows


def _classification_files(step_test: int = 7):
  x_train, y_train = blobs(120, seed=0)
  x_test, y_test = blobs(60, seed=1)
  rng = np.random.default_rng(0)
  common = dict(data_name=np.str_("blobs"), method=np.str_("cmim"))
  return {
      "train": dict(mean=x_train, informative=rng.normal(size=(120, 4)), labels=y_train,
                    step=np.int64(7), **common),
      "test": dict(mean=x_test, informative=rng.normal(size=(60, 4)), labels=y_test,
                   step=np.int64(step_test), **common),
  }


def test_run_probes_on_train_test_files():
  settings = evaluate.ProbeSettings(max_train=100, num_seeds=2,
                                    probes=("knn5_cosine", "random_forest"))
  report = evaluate.run_probes(_classification_files(), settings)
  results = report["results"]
  assert set(results) == {"knn5_cosine", "random_forest"}
  # The mean embedding carries the classes; the "informative" one here is pure noise.
  assert results["knn5_cosine"]["mean"]["accuracy"] == {"mean": 1.0, "std": 0.0, "n": 1,
                                                        "train_rows": [100], "seeds": [0]}
  assert results["random_forest"]["mean"]["accuracy"]["seeds"] == [0, 1]
  assert results["knn5_cosine"]["informative"]["accuracy"]["mean"] < 0.7
  assert results["random_forest"]["mean"]["accuracy"]["n"] == 2
  assert report["info"]["evaluations"] == [
      {"family": None, "scored_on": "test", "train_rows": 120, "fitted_rows": 100,
       "test_rows": 60}]
  assert report["info"]["step"] == 7 and report["info"]["data_name"] == "blobs"
  json.dumps(report)  # JSON-ready as it is.


def test_run_probes_refuses_files_from_different_checkpoints():
  with pytest.raises(ValueError, match="disagree on step"):
    evaluate.run_probes(_classification_files(step_test=8))


def test_run_probes_on_split_schemes_pools_each_family():
  x, y = linear_data(160, seed=0)
  rng = np.random.default_rng(1)
  schemes = {}
  for name in ("random0", "random1", "random2", "scaffold"):
    split = rng.choice([0, 1, 2], size=160, p=[0.7, 0.1, 0.2]).astype(np.int8)
    schemes[f"split_{name}"] = split
  files = {"all": dict(mean=x, targets=y, step=np.int64(3), **schemes)}
  settings = evaluate.ProbeSettings(num_seeds=2, probes=("ridge", "random_forest"))
  report = evaluate.run_probes(files, settings)
  ridge = report["results"]["ridge"]["mean"]
  assert set(ridge) == {f"{prefix}{metric}@{family}" for prefix in ("", "val_")
                        for metric in ("rmse", "r2") for family in ("random", "scaffold")}
  assert ridge["r2@random"]["n"] == 3 and ridge["r2@scaffold"]["n"] == 1
  assert ridge["val_r2@random"]["n"] == 3 and ridge["val_r2@scaffold"]["n"] == 1
  assert ridge["r2@random"]["mean"] > 0.99 and ridge["val_r2@random"]["mean"] > 0.99
  assert report["results"]["random_forest"]["mean"]["r2@random"]["n"] == 6  # 3 schemes x 2 seeds
  # Test score: train and valid rows are fitted on, test rows scored. Validation score: train
  # rows fitted on, valid rows scored.
  test_fit, valid_fit = report["info"]["evaluations"][:2]
  split = schemes["split_random0"]
  assert (test_fit["scored_on"], valid_fit["scored_on"]) == ("test", "valid")
  assert test_fit["train_rows"] == int(np.sum(split != 2))
  assert test_fit["test_rows"] == int(np.sum(split == 2))
  assert valid_fit["train_rows"] == int(np.sum(split == 0))
  assert valid_fit["test_rows"] == int(np.sum(split == 1))
  assert evaluate.scheme_family("random12") == "random"
  assert evaluate.scheme_family("scaffold") == "scaffold"


def _one_scheme_file(num: int = 120, seed: int = 0):
  """all-layout arrays: noiseless linear targets, split_random0 of 60% train, 20% valid, 20% test."""
  x, y = linear_data(num, seed=seed, noise=0.0)
  split = np.repeat(np.array([0, 1, 2], np.int8), [num * 3 // 5, num // 5, num // 5])
  split = np.random.default_rng(seed).permutation(split)
  return dict(mean=x, targets=y, split_random0=split)


def test_validation_scores_are_fitted_on_train_and_scored_on_valid_rows_only():
  arrays = _one_scheme_file()
  split, settings = arrays["split_random0"], evaluate.ProbeSettings(probes=("ridge",))

  def ridge(arrays):
    return evaluate.run_probes({"all": arrays}, settings)["results"]["ridge"]["mean"]

  base = ridge(arrays)
  assert base["val_rmse@random"]["mean"] < 0.01 and base["rmse@random"]["mean"] < 0.01
  # Valid targets shifted by 3: the fit on train rows alone still predicts the unshifted values,
  # so its validation RMSE is 3; the test fit learns from the shifted rows, so its score moves.
  shifted_valid = dict(arrays, targets=arrays["targets"] + 3.0 * (split == 1)[:, None])
  moved = ridge(shifted_valid)
  assert moved["val_rmse@random"]["mean"] == pytest.approx(3.0, abs=0.02)
  assert moved["rmse@random"]["mean"] > 0.1
  # Test rows changed (targets and features): the validation score stays exactly as it was.
  test = split == 2
  changed_test = dict(arrays, targets=arrays["targets"] + 5.0 * test[:, None],
                      mean=(arrays["mean"] + 7.0 * test[:, None]).astype(np.float32))
  changed = ridge(changed_test)
  assert changed["val_rmse@random"] == base["val_rmse@random"]
  assert changed["rmse@random"]["mean"] > 1.0


def test_split_layout_controls_take_statistics_from_each_fits_training_rows_only():
  arrays = _one_scheme_file()
  rng = np.random.default_rng(1)
  arrays.update(raw=rng.uniform(size=(120, 20)), informative=rng.normal(size=(120, 8)),
                split_scaffold=rng.permutation(arrays["split_random0"]))
  features, _, evaluations = evaluate.plan({"all": arrays})
  settings = evaluate.ProbeSettings()
  derived = evaluate.features_per_evaluation(features, evaluations, settings)
  assert len(evaluations) == 4 and len(derived["pca"]) == 4
  assert derived["pca"][0].shape == (120, 3) and derived["random_expansion"][0].shape == (120, 8)
  assert derived["mean"][0] is derived["mean"][3]  # The files' embeddings are shared, not copied.
  for number, evaluation in enumerate(evaluations):
    # Every row this fit does not train on (its scored rows among them) moved far away.
    outside = np.ones(120, bool)
    outside[evaluation.train_rows] = False
    moved = {k: v + 9.0 * outside[:, None] for k, v in features.items()}
    again = evaluate.features_per_evaluation(moved, evaluations, settings)
    for name in controls.DERIVED:
      np.testing.assert_allclose(again[name][number][evaluation.train_rows],
                                 derived[name][number][evaluation.train_rows], rtol=1e-5,
                                 atol=1e-5)
  widths = evaluate.features_per_evaluation({"raw": features["raw"]}, evaluations,
                                            evaluate.ProbeSettings(pca_dim=5))
  assert set(widths) == {"raw", "pca"} and widths["pca"][0].shape == (120, 5)
  report = evaluate.run_probes({"all": arrays}, evaluate.ProbeSettings(probes=("ridge",)))
  assert list(report["results"]["ridge"]) == [
      "mean", "informative", "raw", "pca", "random_expansion"]
  assert "val_rmse@scaffold" in report["results"]["ridge"]["pca"]


def test_fingerprint_changes_with_the_set_of_fits():
  arrays = _one_scheme_file()
  features, annotations, evaluations = evaluate.plan({"all": arrays})
  probe, settings = suite.select_probes(suite.REGRESSION, ["ridge"])[0], evaluate.ProbeSettings()
  fits = [(e, e.train_rows) for e in evaluations]
  xs = [features["mean"]] * len(fits)
  both = evaluate.fingerprint(probe, settings, xs, annotations["targets"], fits)
  test_only = evaluate.fingerprint(probe, settings, xs[:1], annotations["targets"], fits[:1])
  assert both != test_only
  assert both == evaluate.fingerprint(probe, settings, [features["mean"].copy()] * 2,
                                      annotations["targets"], fits)


def test_run_probes_needs_a_test_set():
  x, y = linear_data(20, seed=0)
  with pytest.raises(ValueError, match="split_"):
    evaluate.run_probes({"all": dict(mean=x, targets=y)})
  with pytest.raises(ValueError, match="train and test"):
    evaluate.run_probes({"train": dict(mean=x, targets=y)})


# -- z-scores and ranks ---------------------------------------------------------------------------


def _results(accuracy, rmse):
  return {"knn": {"mean": {"accuracy": {"mean": accuracy, "std": 0.0, "n": 1}}},
          "ridge": {"mean": {"rmse": {"mean": rmse, "std": 0.0, "n": 1}}}}


def test_zscores_and_ranks_by_hand():
  # accuracy (higher better) 0.9, 0.9, 0.6: mean 0.8, population std sqrt(0.02).
  # rmse (lower better) 2, 1, 3 -> oriented -2, -1, -3: mean -2, population std sqrt(2/3).
  table = compare.build_table({"a": _results(0.9, 2.0), "b": _results(0.9, 1.0),
                               "c": _results(0.6, 3.0)})
  assert table.entries == [("a", "mean"), ("b", "mean"), ("c", "mean")]
  assert table.criteria == [("knn", "accuracy"), ("ridge", "rmse")]
  result = compare.compare(table)
  z_accuracy = np.array([0.1, 0.1, -0.2]) / np.sqrt(0.02)
  z_rmse = np.array([0.0, 1.0, -1.0]) / np.sqrt(2.0 / 3.0)
  np.testing.assert_allclose(result["z"], np.stack([z_accuracy, z_rmse], axis=1))
  np.testing.assert_array_equal(result["rank"], [[1.5, 2.0], [1.5, 1.0], [3.0, 3.0]])
  assert result["per_run"]["a"]["mean_z"] == pytest.approx((z_accuracy[0] + z_rmse[0]) / 2)
  assert result["per_run"]["b"]["mean_rank"] == pytest.approx(1.25)
  assert result["per_run"]["c"]["mean_rank"] == pytest.approx(3.0)
  assert result["per_entry"][("b", "mean")]["n"] == 2


def test_run_means_pool_its_embeddings_and_equal_values_score_zero():
  results = {
      "x": {"knn": {"mean": {"accuracy": {"mean": 0.5}},
                    "informative": {"accuracy": {"mean": 0.8}}},
            "rf": {"mean": {"accuracy": {"mean": 0.9}},
                   "informative": {"accuracy": {"mean": 0.9}}}},
      "y": {"knn": {"mean": {"accuracy": {"mean": 0.6}}},
            "rf": {"mean": {"accuracy": {"mean": 0.9}}}},
  }
  table = compare.build_table(results)
  assert table.entries == [("x", "mean"), ("x", "informative"), ("y", "mean")]
  result = compare.compare(table)
  # rf: all equal -> z = 0 and tied ranks 2 for everyone.
  np.testing.assert_allclose(result["z"][:, 1], 0.0)
  np.testing.assert_allclose(result["rank"][:, 1], 2.0)
  # knn: 0.5, 0.8, 0.6, mean 1.9 / 3, deviations (-0.4, 0.5, -0.1) / 3, variance 0.42 / 27.
  z_knn = np.array([-0.4, 0.5, -0.1]) / 3 / np.sqrt(0.42 / 27)
  np.testing.assert_allclose(result["z"][:, 0], z_knn)
  np.testing.assert_array_equal(result["rank"][:, 0], [3.0, 1.0, 2.0])
  assert result["per_run"]["x"]["mean_z"] == pytest.approx((z_knn[0] + z_knn[1]) / 4)
  assert result["per_run"]["x"]["mean_rank"] == pytest.approx((3.0 + 1.0 + 2.0 + 2.0) / 4)
  assert result["per_run"]["x"]["n"] == 4
  assert result["per_entry"][("x", "informative")]["mean_z"] == pytest.approx(z_knn[1] / 2)
  assert result["per_run"]["y"]["mean_rank"] == pytest.approx((2.0 + 2.0) / 2)


def test_criteria_missing_from_an_entry_are_dropped():
  table = compare.build_table({"a": _results(0.9, 2.0),
                               "b": {"knn": _results(0.8, 1.0)["knn"]}})
  assert table.criteria == [("knn", "accuracy")]
  assert table.dropped == [("ridge", "rmse")]


def test_zscore_and_rank_maths_skip_absent_cells():
  scores = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, 4.0]])
  np.testing.assert_allclose(compare.zscores(scores), [[-1, np.nan], [1, -1], [np.nan, 1]])
  np.testing.assert_array_equal(compare.ranks(scores), [[2, np.nan], [1, 2], [np.nan, 1]])


def test_scheme_metrics_keep_their_orientation():
  assert compare.metric_base("rmse@scaffold") == "rmse"
  table = compare.build_table({
      "a": {"svr": {"mean": {"rmse@random": {"mean": 1.0}}}},
      "b": {"svr": {"mean": {"rmse@random": {"mean": 2.0}}}}})
  np.testing.assert_array_equal(compare.compare(table)["rank"], [[1.0], [2.0]])


# -- geometry -------------------------------------------------------------------------------------


def test_geometry_by_hand():
  x = np.array([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]])
  labels = np.array([0, 1, 0, 1])
  geo = geometry.geometry(x, labels)
  np.testing.assert_allclose(geo["norms"], [3.0, 2.0, 1.0, np.sqrt(2.0)])
  # Pairs in order (0,1) (0,2) (0,3) (1,2) (1,3) (2,3).
  cosines = np.array([0.0, -1.0, 1 / np.sqrt(2), 0.0, 1 / np.sqrt(2), -1 / np.sqrt(2)])
  np.testing.assert_allclose(geo["angles"], [90.0, 180.0, 45.0, 90.0, 45.0, 135.0], atol=1e-6)
  assert geo["cosine"]["mean"] == pytest.approx(np.mean(cosines))
  assert geo["cosine"]["var"] == pytest.approx(np.var(cosines))
  # Same-label pairs: (0,2) and (1,3).
  np.testing.assert_array_equal(geo["same_class"], [False, True, False, False, True, False])
  assert geo["within_class"]["mean"] == pytest.approx((-1.0 + 1 / np.sqrt(2)) / 2)
  assert geo["across_class"]["pairs"] == 4
  assert geometry.geometry(x)["cosine"]["pairs"] == 6
  assert "within_class" not in geometry.geometry(x)


def test_geometry_subsets_rows_for_pairs_only():
  x = np.random.default_rng(0).normal(size=(50, 3))
  geo = geometry.geometry(x, max_points=10)
  assert len(geo["norms"]) == 50 and geo["cosine"]["pairs"] == 45


# -- embedding files ------------------------------------------------------------------------------


def test_npz_is_deterministic_and_loads_without_pickle(tmp_path):
  arrays = {"mean": np.arange(6, dtype=np.float32).reshape(3, 2), "labels": np.array([1, 2, 3]),
            "step": np.int64(5), "data_name": np.str_("mnist")}
  first = embedding_files.save_npz(tmp_path / "a" / "test.npz", arrays)
  second = embedding_files.save_npz(tmp_path / "b" / "test.npz", dict(reversed(arrays.items())))
  assert first.read_bytes() == second.read_bytes()
  with np.load(first, allow_pickle=False) as loaded:
    assert sorted(loaded.files) == sorted(arrays)
    assert loaded["step"].shape == () and loaded["data_name"].item() == "mnist"
  loaded = embedding_files.load_npz(first)
  np.testing.assert_array_equal(loaded["mean"], arrays["mean"])
  assert [p.name for p in (tmp_path / "a").iterdir()] == ["test.npz"]  # No temp file left.


def test_npz_refuses_object_arrays_and_reports_missing_files(tmp_path):
  with pytest.raises(TypeError, match="object"):
    embedding_files.save_npz(tmp_path / "x.npz", {"bad": np.array([{}, None], dtype=object)})
  assert not list(tmp_path.iterdir())
  with pytest.raises(FileNotFoundError, match="experiments.embed"):
    embedding_files.load_npz(tmp_path / "missing.npz")


def test_ecfp4_baseline_features_are_probed_like_an_embedding():
  """The ECFP4 baseline file (key "ecfp4", a split scheme, targets) goes through the same probes."""
  from cmim_jax.probes import evaluate  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  bits = rng.integers(0, 2, (200, 32)).astype(np.float32)
  targets = (bits[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0]))[:, None].astype(np.float32)
  split = np.where(np.arange(200) < 160, 0, 2).astype(np.int8)
  report = evaluate.run_probes(
      {"all": {"ecfp4": bits, "targets": targets, "split_random0": split}},
      evaluate.ProbeSettings(probes=["ridge"]))
  rmse = report["results"]["ridge"]["ecfp4"]["rmse@random"]["mean"]
  assert rmse < 0.1 * np.std(targets)


# -- controls, partial results, bad inputs --------------------------------------------------------


def test_controls_have_the_widths_of_the_embeddings_they_control():
  rng = np.random.default_rng(0)
  features = {"raw": rng.uniform(size=(50, 30)), "mean": rng.normal(size=(50, 4)),
              "informative": rng.normal(size=(50, 12))}
  fit_rows = np.arange(40)
  out = controls.add_controls(features, fit_rows)
  assert out["pca"].shape == (50, 4) and out["random_expansion"].shape == (50, 12)
  assert out["pca"].dtype == out["random_expansion"].dtype == np.float32
  np.testing.assert_array_equal(out["random_expansion"],
                                controls.add_controls(features, fit_rows)["random_expansion"])
  # PCA: fitted on the training rows only (changing the others moves none of their projections),
  # and it spans the same subspace as scikit-learn's.
  moved = dict(features, raw=np.concatenate([features["raw"][:40], 9.0 + features["raw"][40:]]))
  np.testing.assert_allclose(controls.add_controls(moved, fit_rows)["pca"][:40], out["pca"][:40],
                             rtol=1e-5, atol=1e-6)
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  reference = PCA(4).fit(features["raw"][:40]).transform(features["raw"])
  np.testing.assert_allclose(np.abs(out["pca"]), np.abs(reference), rtol=1e-4, atol=1e-5)
  assert set(controls.add_controls(features, fit_rows, wanted=["mean"])) == set(features)
  assert "pca" not in controls.add_controls({"mean": features["mean"]}, fit_rows)


def _files_with_raw(noise_seed: int = 0):
  files = _classification_files()
  rng = np.random.default_rng(noise_seed)
  for split in files.values():
    split["raw"] = np.concatenate([split["mean"], rng.uniform(size=(len(split["mean"]), 10))], 1)
  return files


def test_controls_are_probed_and_compared_beside_the_embeddings():
  settings = evaluate.ProbeSettings(probes=("knn5_cosine",))
  report = evaluate.run_probes(_files_with_raw(), settings)
  assert list(report["results"]["knn5_cosine"]) == [
      "mean", "informative", "raw", "pca", "random_expansion"]
  assert report["info"]["controls"] == ["raw", "pca", "random_expansion"]
  learned = evaluate.run_probes(_files_with_raw(), dataclasses.replace(settings, controls=False))
  assert list(learned["results"]["knn5_cosine"]) == ["mean", "informative"]
  other = evaluate.run_probes(_files_with_raw(noise_seed=1), settings)
  learned_only = {run: {p: {e: v for e, v in by_e.items() if e not in controls.CONTROLS}
                        for p, by_e in r["results"].items()}
                  for run, r in (("a", report), ("b", other))}
  with_controls = compare.build_table({"a": report["results"], "b": other["results"]})
  assert with_controls.entries == [("a", "mean"), ("a", "informative"), ("b", "mean"),
                                   ("b", "informative")]
  assert [e for _, e in with_controls.controls] == ["raw", "pca", "random_expansion"] * 2
  result = compare.compare(with_controls)
  plain = compare.compare(compare.build_table(learned_only))
  np.testing.assert_array_equal(result["z"], plain["z"])  # Controls change no entry's z-score.
  assert result["control_z"].shape == (6, 1)


def test_bad_inputs_raise_data_errors():
  files = _classification_files()
  files["test"]["mean"] = files["test"]["mean"][:-1]
  with pytest.raises(errors.DataError, match="'mean' has shape"):
    evaluate.run_probes(files)
  x, y = blobs(30, seed=0)
  probe = suite.select_probes(suite.CLASSIFICATION, ["linear"])[0]
  broken = x.copy()
  broken[3, 1] = np.nan
  with pytest.raises(errors.DataError, match="1 of 30 train feature rows hold NaN"):
    suite.fit_and_score(probe, 0, broken, y, x, y)
  with pytest.raises(errors.DataError, match="29 train labels"):
    suite.fit_and_score(probe, 0, x, y[:29], x, y)


def _write_files(folder, files):
  for split, arrays in files.items():
    embedding_files.save_npz(folder / f"{split}.npz", arrays)


def test_finished_probes_are_saved_at_once_and_reused_by_a_rerun(tmp_path):
  _write_files(tmp_path / "embeddings", _classification_files())
  out = tmp_path / "probe"
  settings = evaluate.ProbeSettings(probes=("knn5_cosine", "linear"), embeddings=("mean",))
  first = workflows.probe_run(tmp_path / "embeddings", out, settings)
  parts = sorted(p.name for p in (out / workflows.PARTIAL_DIR).iterdir())
  assert parts == ["knn5_cosine__mean.json", "linear__mean.json"]  # No temporary file left.
  assert first["reused"] == []
  assert first["results"]["linear"]["mean"]["accuracy"]["train_rows"] == [120]  # All rows.
  stamps = {p: p.stat().st_mtime_ns for p in (out / workflows.PARTIAL_DIR).iterdir()}

  second = workflows.probe_run(tmp_path / "embeddings", out, settings)
  assert second["reused"] == [["knn5_cosine", "mean"], ["linear", "mean"]]
  assert second["results"] == first["results"]
  assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # Not rewritten.
  assert "Reused from an earlier run" in (out / workflows.RESULTS_MD).read_text()

  # A truncated file (a partial write of some other tool) and a stale one are not trusted.
  knn = out / workflows.PARTIAL_DIR / "knn5_cosine__mean.json"
  knn.write_text(knn.read_text()[:20])
  files = _classification_files()
  files["train"]["labels"] = files["train"]["labels"][::-1].copy()
  _write_files(tmp_path / "embeddings", files)
  third = workflows.probe_run(tmp_path / "embeddings", out, settings)
  assert third["reused"] == []
  assert third["results"]["linear"]["mean"] != first["results"]["linear"]["mean"]
  json.loads(knn.read_text())  # Whole again.
