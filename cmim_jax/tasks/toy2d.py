"""The 2-D toy: random points in the plane, a 2-D latent, and the geometry of the latent codes.

The paper's first experiment: with a 2-D latent, the angles of cMIM's mean encodings spread out
more uniformly around the circle than MIM's or the VAE's. `evaluate` measures that with a Rayleigh
test and a Kolmogorov-Smirnov test of the angles against the uniform distribution, and reports the
spread of the radii.
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np
from jax.sharding import Mesh

from cmim_jax import models
from cmim_jax.embedding import compute as embedding_compute
from cmim_jax.errors import ConfigError
from cmim_jax.tasks.base import Task


def sample_points(num_points: int, seed: int, distribution: str) -> np.ndarray:
  """float32 [N, 2]: "uniform" on [-1, 1]^2 or "gaussian" N(0, I)."""
  rng = np.random.default_rng(seed)
  if distribution == "uniform":
    return rng.uniform(-1.0, 1.0, (num_points, 2)).astype(np.float32)
  if distribution == "gaussian":
    return rng.standard_normal((num_points, 2)).astype(np.float32)
  raise ConfigError(f"data.distribution must be 'uniform' or 'gaussian', got {distribution!r}.")


def rayleigh_test(angles: np.ndarray) -> tuple[float, float]:
  """Rayleigh test of circular uniformity: (mean resultant length R, p-value).

  Small p rejects uniformity (the angles cluster around one direction). p uses the
  large-sample series of Zar, Biostatistical Analysis, eq. 27.4.
  """
  n = len(angles)
  resultant = float(np.abs(np.mean(np.exp(1j * angles))))
  p = math.exp(math.sqrt(1 + 4 * n + 4 * (n**2 - (n * resultant)**2)) - (1 + 2 * n))
  return resultant, min(1.0, p)


def geometry_statistics(latents: np.ndarray) -> dict[str, float]:
  """Angle uniformity and radius spread of 2-D latent codes [N, 2]."""
  if latents.ndim != 2 or latents.shape[1] != 2:
    raise ValueError(f"Geometry statistics need 2-D latents [N, 2], got {latents.shape}.")
  from scipy import stats  # pylint: disable=g-import-not-at-top  (slow to import; used here only)
  angles = np.arctan2(latents[:, 1], latents[:, 0])
  radii = np.linalg.norm(latents, axis=1)
  resultant, rayleigh_p = rayleigh_test(angles)
  ks = stats.kstest(angles, stats.uniform(loc=-math.pi, scale=2 * math.pi).cdf)
  return {
      "angle_mean_resultant_length": resultant,
      "angle_rayleigh_p": rayleigh_p,
      "angle_ks_statistic": float(ks.statistic),
      "angle_ks_p": float(ks.pvalue),
      "radius_mean": float(np.mean(radii)),
      "radius_std": float(np.std(radii)),
      "radius_coefficient_of_variation": float(np.std(radii) / np.mean(radii)),
  }


class Toy2DTask(Task):
  """Points [N, 2] reconstructed through a latent of `model.latent_dim` (2 in the paper)."""

  embedding_splits = ("all",)

  def __init__(self, config: ml_collections.ConfigDict):
    self.points = sample_points(config.data.num_points, config.seed, config.data.distribution)
    self.source = f"synthetic:{config.data.distribution}:{config.data.num_points}"
    self.train_arrays = {"point": self.points}
    self.example_input = self.points[:2]

  def build_model(self, model_config):
    return models.build_autoencoder(model_config, (2,))

  def preprocess(self, batch, key):
    del key
    return batch["point"]

  def embedding_inputs(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if split != "all":
      raise ConfigError(f"The 2-D toy has one split, 'all'; got {split!r}.")
    return self.points, {}

  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """Reconstruction NLL and the geometry of the mean encodings (see `geometry_statistics`)."""
    embedded = embedding_compute.embed_inputs(model, params, self.points, mesh, batch_size=1000)
    summary = {"reconstruction_loss": float(np.mean(embedded["reconstruction_nll"]))}
    if embedded["mean"].shape[1] == 2:
      summary.update(geometry_statistics(embedded["mean"]))
    return summary

  def mean_encodings(self, model, params, mesh: Mesh) -> np.ndarray:
    """[N, D] mean encodings of the points (for plots)."""
    return embedding_compute.embed_inputs(model, params, self.points, mesh, batch_size=1000)["mean"]


def build_toy2d_task(config: ml_collections.ConfigDict) -> Toy2DTask:
  return Toy2DTask(config)
