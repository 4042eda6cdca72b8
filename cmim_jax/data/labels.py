"""Checks of class labels and regression targets, shared by the data loaders and the probes.

Each refusal is a `DataError` that names the file or array and shows the bad values, e.g.

  t10k-labels-idx1-ubyte.gz: labels must be whole class numbers 0..9; 3 of 100 are not
  (e.g. nan, nan, 0.5).
"""

from __future__ import annotations

import numpy as np

from cmim_jax.errors import DataError


def _examples(values: np.ndarray, count: int = 5) -> str:
  return ", ".join(repr(v) for v in np.unique(values)[:count].tolist())


def _column(values, source: str, what: str) -> np.ndarray:
  """`values` as a numeric [N] array ([N, 1] is squeezed)."""
  values = np.asarray(values)
  if values.ndim == 2 and values.shape[1] == 1:
    values = values[:, 0]
  if values.ndim != 1:
    raise DataError(f"{source}: {what} must have shape [N] or [N, 1], got {values.shape}.")
  if values.dtype.kind not in "biuf":
    raise DataError(f"{source}: {what} must be numbers, got dtype {values.dtype}.")
  return values


def class_labels(values, source: str, num_classes: int | None = None,
                 min_classes: int = 2) -> np.ndarray:
  """Checks class labels and returns them as int32 [N].

  Args:
    values: labels [N] or [N, 1], integer or whole-valued float.
    source: the file or array they came from (named in every error).
    num_classes: the number of classes C when known: labels must lie in 0..C-1. None: only
      negative labels are refused.
    min_classes: the fewest distinct classes accepted (2: one class makes every classifier
      score 1.0); 0 skips the check (e.g. for a test split).

  Raises:
    DataError: wrong shape, non-numeric, NaN/inf or fractional values, a label outside 0..C-1,
      or fewer than `min_classes` classes.
  """
  values = _column(values, source, "labels")
  expected = f"0..{num_classes - 1}" if num_classes else "0, 1, 2, ..."
  if values.dtype.kind == "f":
    bad = ~np.isfinite(values)
    bad[~bad] = values[~bad] != np.round(values[~bad])
    if bad.any():
      raise DataError(f"{source}: labels must be whole class numbers {expected}; {bad.sum()} of "
                      f"{len(values)} are not (e.g. {_examples(values[bad])}).")
  ints = values.astype(np.int64)
  bad = (ints < 0) | (ints >= num_classes if num_classes else False)
  if bad.any():
    raise DataError(f"{source}: labels must be classes {expected}; {bad.sum()} of {len(ints)} are "
                    f"not (e.g. {_examples(ints[bad])}).")
  classes = np.unique(ints)
  if len(classes) < min_classes:
    raise DataError(f"{source}: the {len(ints)} labels hold {len(classes)} class(es) "
                    f"{classes.tolist()}; a classifier needs at least {min_classes}.")
  return ints.astype(np.int32)


def regression_targets(values, source: str) -> np.ndarray:
  """Checks regression targets [N] or [N, T]: numeric and finite; returns them unchanged."""
  values = np.asarray(values)
  if values.ndim not in (1, 2) or values.dtype.kind not in "biuf":
    raise DataError(f"{source}: targets must be numbers of shape [N] or [N, T], got "
                    f"{values.dtype} {values.shape}.")
  bad = ~np.isfinite(values)
  if bad.any():
    raise DataError(f"{source}: targets must be finite; {bad.sum()} are not (e.g. "
                    f"{_examples(values[bad])}).")
  return values


def binary_labels(values, source: str) -> np.ndarray:
  """0 / 1 labels per task with NaN for missing ones, [N, T] float64; a DataError naming `source`
  and the bad values when any other value is present."""
  values = np.asarray(values, np.float64)
  bad = ~np.isnan(values) & (values != 0) & (values != 1)
  if bad.any():
    raise DataError(f"{source}: binary labels must be 0, 1 or missing (NaN); {int(bad.sum())} are "
                    f"not (e.g. {_examples(values[bad])}).")
  return values
