"""The 2-D toy task: points, the Gaussian decoder, and the geometry statistics."""

import math

import numpy as np
import pytest

from cmim_jax import training
from cmim_jax.tasks import toy2d
from experiments.configs import toy2d as toy2d_config


def test_uniform_angles_pass_and_clustered_angles_fail_the_uniformity_tests():
  rng = np.random.default_rng(0)
  angles = rng.uniform(-math.pi, math.pi, 2000)
  ring = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(0.5, 1.5, (2000, 1))
  uniform = toy2d.geometry_statistics(ring)
  assert uniform["angle_rayleigh_p"] > 0.01 and uniform["angle_ks_p"] > 0.01
  assert uniform["angle_mean_resultant_length"] < 0.05

  clustered_angles = rng.normal(0.3, 0.5, 2000)
  clustered = toy2d.geometry_statistics(
      np.stack([np.cos(clustered_angles), np.sin(clustered_angles)], 1))
  assert clustered["angle_rayleigh_p"] < 1e-6 and clustered["angle_ks_p"] < 1e-6
  np.testing.assert_allclose(clustered["angle_mean_resultant_length"], math.exp(-0.5**2 / 2),
                             atol=0.02)  # E[R] of a wrapped normal.
  np.testing.assert_allclose(clustered["radius_std"], 0.0, atol=1e-6)


def test_geometry_statistics_reject_non_2d_latents():
  with pytest.raises(ValueError, match=r"need 2-D latents \[N, 2\]"):
    toy2d.geometry_statistics(np.zeros((5, 3)))


def test_sample_points_are_deterministic_and_validated():
  np.testing.assert_array_equal(toy2d.sample_points(10, 0, "uniform"),
                                toy2d.sample_points(10, 0, "uniform"))
  assert np.abs(toy2d.sample_points(500, 1, "uniform")).max() <= 1.0
  with pytest.raises(ValueError, match="'uniform' or 'gaussian'"):
    toy2d.sample_points(10, 0, "ring")


@pytest.mark.parametrize("method", ["cmim", "mim", "vae"])
def test_toy2d_trains_and_reports_geometry(method, tmp_path):
  config = toy2d_config.get_config("quick")
  config.loss.method = method
  config.data.num_points = 256
  config.data.batch_size = 64
  config.train.num_steps = 40
  summary = training.train_and_evaluate(config, tmp_path)
  assert {"reconstruction_loss", "angle_rayleigh_p", "angle_ks_p", "radius_std"} <= set(summary)
  assert 0.0 <= summary["angle_rayleigh_p"] <= 1.0
