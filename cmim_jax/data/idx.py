"""Reader and writer for (gzipped) IDX files, the format of MNIST-like data sets."""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from cmim_jax.errors import DataError

# IDX type codes -> numpy big-endian dtypes.
_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}


class IdxFormatError(DataError):
  """An IDX file is corrupt, truncated or not what was expected."""


def _read_bytes(path: str | os.PathLike) -> bytes:
  opener = gzip.open if str(path).endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      return f.read()
  except (OSError, EOFError, zlib.error) as e:  # gzip raises these for corrupt or cut streams.
    raise IdxFormatError(
        f"{path}: cannot decompress ({e}). The file is corrupt or truncated; delete it and "
        "download it again.") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (gzipped when its name ends in .gz) into an array of its stored shape.

  Raises:
    IdxFormatError: naming the file, when the magic number, dimensions or length are wrong.
  """
  data = _read_bytes(path)
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise IdxFormatError(f"{path}: not an IDX file (bad magic number {data[:4].hex()!r}).")
  type_code, ndim = data[2], data[3]
  if type_code not in _DTYPES or ndim == 0:
    raise IdxFormatError(
        f"{path}: unsupported IDX header (type 0x{type_code:02x}, {ndim} dimensions).")
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise IdxFormatError(f"{path}: truncated inside the header.")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  dtype = _DTYPES[type_code]
  expected = header_size + int(np.prod(shape)) * dtype.itemsize
  if len(data) != expected:
    raise IdxFormatError(
        f"{path}: header says shape {shape} ({expected} bytes) but the file holds {len(data)} "
        "bytes; it is truncated or corrupt. Delete it and download it again.")
  array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes `array` as an IDX file, gzipped when `path` ends in .gz."""
  array = np.asarray(array)
  native = array.dtype.newbyteorder("=")
  if native not in _CODES:
    raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {sorted(map(str, _CODES))}.")
  header = bytes([0, 0, _CODES[native], array.ndim])
  header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
  payload = header + array.astype(native.newbyteorder(">")).tobytes()
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)
