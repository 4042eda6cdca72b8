"""Baselines and controls of the paper's image tables (mnist_table, batch_size), on tiny files.

Synthetic embedding files stand in for trained runs (`common.embed` keeps files that exist), so
the real probes run on them in a second: raw and pca are probed once per data set, the capacity
control only for runs with an informative embedding, and no control joins the z-scores. The pixel
baselines of the validation-split experiments (`common.pixel_baselines`) are the runs' own probes
on the pixels and on PCA of them fitted on the training rows.
"""

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from cmim_jax.data.idx import read_idx
from cmim_jax.embedding import files as embedding_files
from cmim_jax.probes import evaluate, linear
from experiments.paper import batch_size, common, mnist_table, stats

SETTINGS = evaluate.ProbeSettings(max_train=None, num_seeds=1, probes=("knn5_cosine",))
RUNS = (("cmim", 0), ("cmim", 1), ("infonce", 0))


def write_run(workdir, seed: int, informative: bool) -> None:
  """train.npz / test.npz of a fake run: 3 classes, mean [N, 4], informative [N, 6] if asked, and
  raw [N, 16] in every run's files (so probing raw once is the orchestration's doing)."""
  rng = np.random.default_rng(seed)
  for split, n in (("train", 60), ("test", 30)):
    labels = np.arange(n) % 3
    centres = np.eye(16, dtype=np.float32)[labels] * 3
    raw = centres + rng.normal(size=(n, 16)).astype(np.float32)
    arrays = {"mean": raw[:, :4] + rng.normal(size=(n, 4)).astype(np.float32), "raw": raw,
              "labels": labels}
    if informative:
      arrays["informative"] = np.tanh(raw[:, :6])
    embedding_files.save_npz(workdir / "embeddings" / f"{split}.npz", arrays)


@pytest.fixture
def workdirs(tmp_path):
  dirs = {key: tmp_path / f"{key[0]}_seed{key[1]}" for key in RUNS}
  for (method, seed), workdir in dirs.items():
    write_run(workdir, seed, informative=method == "cmim")
  return dirs


def embeddings_of(results):
  return {e for by_embedding in results.values() for e in by_embedding}


def test_embeddings_to_probe_adds_the_capacity_control_and_the_baselines_on_request():
  assert common.embeddings_to_probe(("mean", "informative", "raw")) == (
      "mean", "informative", "random_expansion")
  assert common.embeddings_to_probe(("mean", "raw"), baselines=True) == ("mean", "raw", "pca")
  assert common.embeddings_to_probe(("mean", "informative"), learned=("mean",)) == ("mean",)


def test_probe_runs_probes_the_baselines_once_and_the_expansion_with_informative(workdirs):
  results = common.probe_runs(workdirs, SETTINGS)
  first, *others = RUNS
  assert {"raw", "pca"} <= embeddings_of(results[first])
  assert all(not {"raw", "pca"} & embeddings_of(results[key]) for key in others)
  assert "random_expansion" in embeddings_of(results["cmim", 1])
  assert embeddings_of(results["infonce", 0]) == {"mean"}
  runs, baselines = common.split_baselines(results)
  assert embeddings_of(baselines) == {"raw", "pca"}
  assert embeddings_of(runs[first]) == {"mean", "informative", "random_expansion"}
  with pytest.raises(Exception, match="exactly one run"):
    common.split_baselines({**results, ("cmim", 1): results[first]})


def test_probe_reuses_results_only_of_the_same_settings(workdirs):
  workdir = workdirs["infonce", 0]
  common.probe_runs({"only": workdir}, SETTINGS)
  path = workdir / "probe" / "results.json"
  before = path.stat().st_mtime_ns
  common.probe_runs({"only": workdir}, SETTINGS)
  assert path.stat().st_mtime_ns == before
  more = evaluate.ProbeSettings(max_train=None, num_seeds=1,
                                probes=("knn5_cosine", "knn5_euclidean"))
  assert set(common.probe_runs({"only": workdir}, more)["only"]) == {"knn5_cosine",
                                                                     "knn5_euclidean"}
  assert json.loads(path.read_text())["reused"] == [["knn5_cosine", "mean"],
                                                    ["knn5_cosine", "raw"],
                                                    ["knn5_cosine", "pca"]]


def test_mnist_table_ranks_learned_embeddings_and_lists_controls_beside(workdirs):
  runs, baselines = common.split_baselines(common.probe_runs(workdirs, SETTINGS))
  summaries = {key: {} for key in RUNS}
  table = mnist_table.aggregate(runs, summaries)
  assert set(table) == {"cmim", "infonce"} and set(table["cmim"]) == {"mean", "informative"}
  learned_only = {key: {p: {e: v for e, v in by_e.items() if e != "random_expansion"}
                        for p, by_e in results.items()} for key, results in runs.items()}
  assert mnist_table.aggregate(learned_only, summaries) == table  # Controls move no z-score.

  references = mnist_table.controls_table(runs, baselines)
  assert set(references) == {"raw", "pca", "random_expansion"}
  assert set(references["random_expansion"]) == {"cmim"}  # InfoNCE has no informative embedding.
  expansion = references["random_expansion"]["cmim"]["knn5_cosine/accuracy"]
  per_seed = [runs["cmim", seed]["knn5_cosine"]["random_expansion"]["accuracy"]["mean"]
              for seed in (0, 1)]
  assert expansion == pytest.approx(stats.mean_std(per_seed))
  assert references["raw"]["knn5_cosine/accuracy"] == (
      baselines["knn5_cosine"]["raw"]["accuracy"]["mean"])
  assert np.isfinite(references["pca"]["mean_z"])

  ranked = mnist_table.markdown_table(table)
  assert "random_expansion" not in ranked and "| raw" not in ranked and "| pca" not in ranked
  beside = mnist_table.controls_markdown(references, latent_dim=4)
  assert beside.count("\n") == 1 + 3  # Header, rule, raw, pca, one expansion row.
  assert "| raw |" in beside and "| pca | PCA of the pixels to the latent size (4) |" in beside
  assert "| random_expansion | cmim's mean encoding" in beside
  assert "--probes=mlp" in mnist_table.mlp_note(("knn5_cosine",))
  assert "--probes=mlp" not in mnist_table.mlp_note(None)


def test_batch_size_report_puts_the_baselines_under_each_probe():
  values = {"z": {}, "knn5_cosine accuracy": {}}
  for index, (method, b, seed) in enumerate(
      (m, b, s) for m in ("cmim", "infonce") for b in (2, 10, 50) for s in (0, 1)):
    values["z"][method, b, seed] = index - 5.5
    values["knn5_cosine accuracy"][method, b, seed] = 0.5 + 0.01 * index
  baselines = batch_size.baseline_accuracies(
      {"knn5_cosine": {"raw": {"accuracy": {"mean": 0.8}}, "pca": {"accuracy": {"mean": 0.7}}}})
  assert baselines == {"raw": {"knn5_cosine accuracy": 0.8}, "pca": {"knn5_cosine accuracy": 0.7}}
  table = batch_size.accuracy_table(values, baselines, latent_dim=8)
  assert "| knn5_cosine accuracy | cmim | 0.5050 | 0.5250 | 0.5450 |" in table
  assert "| knn5_cosine accuracy | raw pixels (baseline) | 0.8000 | 0.8000 | 0.8000 |" in table
  assert "| knn5_cosine accuracy | PCA of the pixels to 8 (baseline) |" in table
  fits = {metric: batch_size.regressions(v) for metric, v in values.items()}
  differences = {metric: batch_size.slope_differences(v) for metric, v in values.items()}
  preset = batch_size.preset_for("smoke", "fixed_steps")
  report = batch_size.report("smoke", preset, values, fits, differences, baselines, 1.0, "cmd")
  assert table in report and report.index(table) < report.index("Regression of z")


def test_pixel_baselines_are_the_runs_probes_fitted_on_the_pixels(synthetic_mnist_dir):
  baselines = common.pixel_baselines(synthetic_mnist_dir, (4,))
  assert set(baselines) == {common.RAW_PIXELS, "PCA-4"}
  (train, train_labels), (test, test_labels) = (
      (read_idx(synthetic_mnist_dir / f"{split}-images-idx3-ubyte.gz").reshape(-1, 784)
       .astype(np.float32) / 255.0,
       read_idx(synthetic_mnist_dir / f"{split}-labels-idx1-ubyte.gz").astype(np.int32))
      for split in ("train", "t10k"))
  predicted, _ = linear.fit_predict_classes(train, train_labels, test, seed=0)
  knn = KNeighborsClassifier(n_neighbors=5).fit(train, train_labels)
  assert baselines[common.RAW_PIXELS] == {
      "linear_accuracy": np.mean(predicted == test_labels),
      "knn5_accuracy": knn.score(test, test_labels)}
  assert all(0 < score <= 1 for scores in baselines.values() for score in scores.values())


def test_pixel_features_pca_has_d_columns_fitted_on_the_training_rows_only():
  rng = np.random.default_rng(0)
  spread = np.linspace(3.0, 0.1, 12)  # Distinct variances: well-defined principal axes.
  train = (rng.normal(size=(200, 12)) * spread).astype(np.float32)
  test = (rng.normal(size=(50, 12)) * spread[::-1] + 5.0).astype(np.float32)
  features = common.pixel_features(train, test, (3, 5))
  assert set(features) == {common.RAW_PIXELS, "PCA-3", "PCA-5"}
  assert features[common.RAW_PIXELS] == (train, test)
  for dim in (3, 5):
    pca_train, pca_test = features[f"PCA-{dim}"]
    assert pca_train.shape == (200, dim) and pca_test.shape == (50, dim)
    fitted = PCA(dim).fit(train)  # On the training rows alone; the axes' signs are arbitrary.
    signs = np.sign(np.sum(pca_train * fitted.transform(train), axis=0))
    np.testing.assert_allclose(pca_train * signs, fitted.transform(train), atol=1e-4)
    np.testing.assert_allclose(pca_test * signs, fitted.transform(test), atol=1e-4)
  moved = common.pixel_features(train, test * 3.0, (3,))["PCA-3"]
  np.testing.assert_array_equal(moved[0], features["PCA-3"][0])
