"""The generative end-of-run evaluation of an image run, the likelihood entry point, and the
Frechet distance on sets with known distances."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cmim_jax import training
from cmim_jax.generation import frechet, pictures
from tests.conftest import make_tiny_config


@pytest.fixture(scope="module")
def image_run(synthetic_mnist_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("image_run")
  config = make_tiny_config(synthetic_mnist_dir)
  config.eval.likelihood_samples = 4
  config.eval.pictures = True
  config.eval.frechet = True
  config.eval.frechet_cache_dir = str(workdir / "classifier_cache")
  return workdir, training.train_and_evaluate(config, workdir)


def test_image_run_writes_pictures_and_the_bound_and_the_entry_point_reads_it(image_run):
  workdir, summary = image_run
  for name in ("samples", "reconstructions", "interpolations"):
    path = workdir / f"{name}.png"
    assert summary["pictures"][name] == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert summary["likelihood_num_samples"] == 4 and summary["likelihood_num_examples"] == 128
  # The bound is a bound: -log p(x) <= -ELBO (in expectation; K = 4 on 128 images).
  assert 0 < summary["nll_bound"] <= summary["negative_elbo"] + 1.0
  assert summary["bits_per_dim_bound"] == pytest.approx(
      summary["nll_bound"] / (784 * np.log(2)), rel=1e-5)
  assert summary["frechet_real_vs_real"] < summary["frechet_real_vs_noise"]
  assert len(list((workdir / "classifier_cache").glob("*.npz"))) == 1
  assert json.loads((workdir / "summary.json").read_text())["nll_bound"] == summary["nll_bound"]
  # The entry point bounds the same checkpoint (one test: the run is trained once).
  result = subprocess.run(
      [sys.executable, "-m", "experiments.likelihood", f"--workdir={workdir}", "--num_samples=3",
       "--num_examples=16"], capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  written = json.loads((workdir / "likelihood_K3.json").read_text())
  assert written["likelihood_num_examples"] == 16 and written["nll_bound"] > 0
  assert "bits/dim" in result.stdout


def test_likelihood_entry_point_without_checkpoint_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "experiments.likelihood",
                           f"--workdir={tmp_path}"], capture_output=True, text=True, check=False,
                          timeout=120)
  assert result.returncode == 2 and result.stderr.startswith("Error: No checkpoint")


def test_frechet_distance_known_values():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(4000, 3))
  assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)  # Identical sets.
  shifted = a + np.array([3.0, 0.0, 4.0])  # Same covariance, means 5 apart: 25.
  assert frechet.frechet_distance(a, shifted) == pytest.approx(25.0, rel=1e-6)
  scaled = 2.0 * a  # Same mean, covariance 4 I vs I: tr(I + 4I - 2 * 2I) = 3 (to sampling noise).
  assert frechet.frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)


def test_interpolation_latents_join_the_ends():
  start, end = np.zeros((2, 4)), np.ones((2, 4))
  lines = pictures.interpolation_latents(start, end, 5)
  assert lines.shape == (2, 5, 4)
  np.testing.assert_allclose(lines[:, 0], start)
  np.testing.assert_allclose(lines[:, -1], end)
  np.testing.assert_allclose(lines[0, 2], 0.5)
