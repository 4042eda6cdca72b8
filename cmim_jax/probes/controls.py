"""Baselines and controls probed beside the learned embeddings: pure functions of the files' arrays.

  raw               the inputs themselves, flattened (pixels in [0, 1]); written by
                    `experiments.embed` for image tasks (key "raw" of the embedding files)
  pca               the raw inputs projected on their first D principal axes, D = the width of the
                    mean encoding (the latent size) or a width given; axes fitted on the training
                    rows only
  random_expansion  gelu(standardised(mu) @ W + b) with W [D, H] ~ N(0, 1/D) and b [H] ~ N(0, 1)
                    fixed by `seed`, H = the width of the informative embedding; mu standardised
                    with the training rows' statistics. A capacity control: an informative
                    embedding should beat a random non-linear map of mu to the same width.

The other capacity control, an MLP on the mean encoding, is the suite's `mlp` probe on "mean".
Controls are derived here, in the probe, rather than stored by `experiments.embed`: only "raw"
must be stored (the probe cannot re-read the inputs), and PCA needs the training rows of each fit
before it can project any other row (`evaluate` derives them once per evaluation). "raw" may be
any fixed features: the molecule table stores ECFP4 fingerprints there.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import special

RAW, PCA, RANDOM_EXPANSION = "raw", "pca", "random_expansion"
DERIVED = (PCA, RANDOM_EXPANSION)
CONTROLS = (RAW, *DERIVED)  # Entries of comparisons that are references, not learned embeddings.


def pca(x: np.ndarray, fit_rows: np.ndarray, dim: int) -> np.ndarray:
  """x [N, P] centred with, and projected on the first `dim` principal axes of, x[fit_rows]:
  [N, min(dim, P)] float32. Axis signs are fixed (largest loading positive) for determinism."""
  fitted = np.asarray(x[fit_rows], np.float64)
  mean = fitted.mean(axis=0)
  centred = (fitted - mean).astype(np.float32)  # The Gram product in float32 is 2-4x faster.
  variances, axes = np.linalg.eigh((centred.T @ centred).astype(np.float64) / len(fitted))
  axes = axes[:, np.argsort(variances)[::-1][:dim]]
  axes *= np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(axes.shape[1])])
  return ((np.asarray(x, np.float64) - mean) @ axes).astype(np.float32)


def random_expansion(mean: np.ndarray, fit_rows: np.ndarray, width: int,
                     seed: int = 0) -> np.ndarray:
  """gelu(standardised(mean) @ W + b) [N, width] float32 for mean [N, D]; W ~ N(0, 1/D) [D, width]
  and b ~ N(0, 1) [width] drawn from `seed`; standardised with the statistics of mean[fit_rows]."""
  mean = np.asarray(mean, np.float64)
  centre, spread = mean[fit_rows].mean(axis=0), mean[fit_rows].std(axis=0)
  standardised = (mean - centre) / np.where(spread > 0, spread, 1.0)
  rng = np.random.default_rng(seed)
  weights = rng.normal(scale=1.0 / np.sqrt(mean.shape[1]), size=(mean.shape[1], width))
  pre = standardised @ weights + rng.normal(size=width)
  return (0.5 * pre * (1.0 + special.erf(pre / np.sqrt(2.0)))).astype(np.float32)


def add_controls(features: Mapping[str, np.ndarray], fit_rows: np.ndarray,
                 wanted: Sequence[str] | None = None, seed: int = 0,
                 pca_dim: int | None = None) -> dict[str, np.ndarray]:
  """`features` plus the derived controls its arrays allow (pca needs raw, and mean unless
  `pca_dim` is given; random_expansion mean and informative), only those in `wanted` (None = all).

  Args:
    features: embedding name -> [N, F] over all rows.
    fit_rows: the training rows, the only ones any statistic is taken from.
    pca_dim: the pca control's width; None = the width of features["mean"].
  """
  out = dict(features)
  wanted = DERIVED if wanted is None else wanted
  dim = pca_dim or (features["mean"].shape[1] if "mean" in features else None)
  if PCA in wanted and RAW in features and dim:
    out[PCA] = pca(features[RAW], fit_rows, dim)
  if RANDOM_EXPANSION in wanted and "mean" in features and "informative" in features:
    out[RANDOM_EXPANSION] = random_expansion(features["mean"], fit_rows,
                                             features["informative"].shape[1], seed)
  return out
