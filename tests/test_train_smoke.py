"""A quick end-to-end check of train_and_evaluate on synthetic data."""

import json

from cmim_jax import training


def test_train_and_evaluate_writes_summary(tiny_config, tmp_path):
  summary = training.train_and_evaluate(tiny_config, tmp_path)
  assert summary["data_source"].startswith("data_dir:")
  assert json.loads((tmp_path / "summary.json").read_text()) == summary
  assert 0.0 <= summary["knn5_accuracy_mean"] <= 1.0
