"""Geometry of the mean encodings: radii, pairwise angles and cosine similarities.

Pairwise statistics cover the pairs (i < j) of at most `max_points` rows, a fixed random subset
(seed 0), so their cost stays bounded on large sets.
"""

from __future__ import annotations

import numpy as np


def latent_norms(x: np.ndarray) -> np.ndarray:
  """Euclidean norms (radii) of the rows of x [N, D] -> [N]."""
  return np.linalg.norm(np.asarray(x, np.float64), axis=-1)


def pairwise_cosines(x: np.ndarray) -> np.ndarray:
  """Cosine similarities of all pairs i < j of the rows of x [N, D] -> [N (N - 1) / 2].

  A zero row has cosine 0 with everything.
  """
  x = np.asarray(x, np.float64)
  norms = np.linalg.norm(x, axis=-1, keepdims=True)
  unit = x / np.where(norms > 0, norms, 1.0)
  upper = np.triu_indices(len(x), k=1)
  return np.clip(unit @ unit.T, -1.0, 1.0)[upper]


def angles_degrees(cosines: np.ndarray) -> np.ndarray:
  """Angles in degrees [0, 180] of cosine similarities."""
  return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))


def subset_rows(num_rows: int, max_points: int) -> np.ndarray:
  """Sorted indices of at most `max_points` of `num_rows` rows, chosen with seed 0."""
  if num_rows <= max_points:
    return np.arange(num_rows)
  return np.sort(np.random.default_rng(0).choice(num_rows, max_points, replace=False))


def _moments(values: np.ndarray) -> dict[str, float]:
  return {"mean": float(np.mean(values)), "var": float(np.var(values)), "pairs": int(len(values))}


def geometry(x: np.ndarray, labels: np.ndarray | None = None,
             max_points: int = 2000) -> dict[str, object]:
  """Diagnostics of mean encodings x [N, D] (and class labels [N], when there are some).

  Returns:
    norms: [N] radii of all rows; radius: their {"mean", "std"};
    angles: [P] angles (degrees) of the P pairs of the row subset;
    cosine: {"mean", "var", "pairs"} of their cosine similarities;
    with labels also same_class: bool [P], whether a pair shares its label, and "within_class"
    and "across_class": the cosine moments over pairs of equal and of different labels (None when
    there is no such pair).
  """
  rows = subset_rows(len(x), max_points)
  cosines = pairwise_cosines(x[rows])
  norms = latent_norms(x)
  result: dict[str, object] = {
      "norms": norms, "radius": {"mean": float(np.mean(norms)), "std": float(np.std(norms))},
      "angles": angles_degrees(cosines), "cosine": _moments(cosines)}
  if labels is not None:
    subset_labels = np.asarray(labels)[rows]
    upper = np.triu_indices(len(rows), k=1)
    same = subset_labels[upper[0]] == subset_labels[upper[1]]
    result["same_class"] = same
    for name, mask in (("within_class", same), ("across_class", ~same)):
      result[name] = _moments(cosines[mask]) if mask.any() else None
  return result
