"""A tiny training run goes through the real CLIs embed -> probe -> compare; the Python API."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from cmim_jax import embedding, errors, training
from cmim_jax.embedding import files as embedding_files
from cmim_jax.probes import workflows

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str) -> None:
  """Runs `python -m module args` from the repo root (inheriting the 8-device XLA_FLAGS)."""
  completed = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=dict(os.environ),
                             capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.fixture
def trained_runs(tiny_config, tmp_path):
  """Two tiny runs (cmim and vae) in tmp_path/cmim and tmp_path/vae."""
  runs = {}
  for method in ("cmim", "vae"):
    config = tiny_config.copy_and_resolve_references()
    config.loss.method = method
    training.train_and_evaluate(config, tmp_path / method)
    runs[method] = tmp_path / method
  return runs


@pytest.mark.slow
def test_embed_probe_compare_end_to_end(trained_runs, tmp_path):
  cmim_dir = trained_runs["cmim"]
  run_cli("experiments.embed", f"--workdir={cmim_dir}")
  first = {split: (cmim_dir / "embeddings" / f"{split}.npz").read_bytes()
           for split in ("train", "test")}
  run_cli("experiments.embed", f"--workdir={cmim_dir}", "--split=test",
          f"--out_dir={tmp_path / 'again'}")
  assert (tmp_path / "again" / "test.npz").read_bytes() == first["test"]  # Same bytes twice.

  test = embedding_files.load_npz(cmim_dir / "embeddings" / "test.npz")  # allow_pickle=False
  assert test["mean"].shape == (128, 8) and test["informative"].shape == (128, 64)
  assert test["labels"].shape == (128,) and int(test["step"]) == 6
  assert test["raw"].shape == (128, 784) and 0.0 <= test["raw"].min() <= test["raw"].max() <= 1.0
  assert str(test["data_name"]) == "mnist" and str(test["method"]) == "cmim"

  # The Python API gives the same arrays without files.
  trained = embedding.load_trained(cmim_dir)
  in_process = embedding.embed_split(trained, "test")
  for key in ("mean", "informative", "labels"):
    np.testing.assert_array_equal(in_process[key], test[key])

  probe_args = ["--probes=knn5_cosine,mlp", "--num_seeds=2", "--max_train=256"]
  run_cli("experiments.embed", f"--workdir={trained_runs['vae']}")
  for run_dir in trained_runs.values():
    run_cli("experiments.probe", f"--workdir={run_dir}", *probe_args)
  report = json.loads((cmim_dir / "probe" / "results.json").read_text())
  assert set(report["results"]) == {"knn5_cosine", "mlp"}
  assert set(report["results"]["mlp"]) == {"mean", "informative", "raw", "pca",
                                           "random_expansion"}  # Embeddings and controls.
  assert report["results"]["mlp"]["mean"]["accuracy"]["n"] == 2
  assert report["results"]["knn5_cosine"]["mean"]["accuracy"]["mean"] > 0.5  # Chance is 0.1.
  assert report["info"]["evaluations"][0]["fitted_rows"] == 256
  markdown = (cmim_dir / "probe" / "results.md").read_text()
  assert "| knn5_cosine | accuracy |" in markdown and "256 rows" in markdown

  out = tmp_path / "compare"
  run_cli("experiments.compare", str(cmim_dir), str(trained_runs["vae"]), f"--out={out}")
  content = json.loads((out / "compare.json").read_text())
  assert set(content["per_run"]) == {"cmim", "vae"}
  assert len(content["entries"]) == 4 and len(content["criteria"]) == 2
  assert [control for _, control in content["controls"]] == ["raw", "pca", "random_expansion"] * 2
  z = np.array(content["z"])
  np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)  # Centred per criterion.
  assert set(content["geometry"]["cmim"]) >= {"cosine", "within_class", "across_class", "radius"}
  assert "| cmim |" in (out / "compare.md").read_text()
  for name in ("comparison.png", "geometry_cmim.png", "geometry_vae.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_trained_chooses_steps_and_fails_clearly(tiny_config, tmp_path):
  run_dir = tmp_path / "cmim"
  training.train_and_evaluate(tiny_config, run_dir)  # Checkpoints at steps 3 and 6.
  older = embedding.load_trained(run_dir, step=3)
  newer = embedding.load_trained(run_dir)
  assert (older.step, newer.step) == (3, 6)
  assert older.has_decoder
  inputs, _ = newer.task.embedding_inputs("test")
  vectors = embedding.embed_arrays(newer, inputs[:10])
  assert set(vectors) == {"mean", "informative"}
  assert not np.allclose(embedding.embed_arrays(older, inputs[:10])["mean"], vectors["mean"])
  with pytest.raises(errors.CheckpointError, match=r"available: \[3, 6\]"):
    embedding.load_trained(run_dir, step=4)
  with pytest.raises(ValueError, match="choose from"):
    embedding.embed_split(newer, "valid")
  with pytest.raises(ValueError, match="Unknown data.name 'no_such_data'"):
    embedding.load_trained(run_dir, data_name="no_such_data")
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    embedding.load_trained(tmp_path / "empty")
  assert not (tmp_path / "empty").exists()  # Reading creates nothing.
  with pytest.raises(FileNotFoundError, match="experiments.embed"):
    workflows.probe_run(tmp_path / "empty", tmp_path / "probe")
