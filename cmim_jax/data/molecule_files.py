"""Reading molecule files: SMILES corpora (.csv/.smi, optionally gzipped) and labelled CSVs.

Lines are read as UTF-8, one at a time; a line that is not UTF-8, a missing column or a bad label
is a DataError naming the file, the line and the fix (`cmim_jax.errors`).
"""

from __future__ import annotations

import collections
import csv
import gzip
import pathlib
import zlib
from typing import Iterator, Sequence

import numpy as np
from absl import logging

from cmim_jax.errors import DataError, MissingInputError


def text_lines(path: pathlib.Path, skipped: collections.Counter | None = None):
  """The lines of a UTF-8 text file (gzipped when its name ends in .gz), line endings kept.

  A line that is not UTF-8 raises a DataError naming the file and line; with a `skipped` counter
  it is skipped instead, counted as "not_utf8", and the first one is named in a warning.
  """
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      for number, raw in enumerate(f, start=1):
        try:
          yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
          where = (f"{path}:{number}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not "
                   "UTF-8 text")
          if skipped is None:
            raise DataError(f"{where}; save the file as UTF-8.") from e
          if not skipped["not_utf8"]:
            logging.warning("%s; skipping such lines (counted in the summary).", where)
          skipped["not_utf8"] += 1
  except (OSError, EOFError, zlib.error) as e:  # gzip raises these for corrupt or cut streams.
    raise DataError(f"{path}: cannot read it ({e}); the file is corrupt or truncated.") from e


def find_column(header: Sequence[str], name: str, path) -> int:
  """Index of column `name` in `header` (exact match first, then case-insensitive)."""
  stripped = [h.strip() for h in header]
  if name in stripped:
    return stripped.index(name)
  lowered = [h.lower() for h in stripped]
  if name.lower() in lowered:
    return lowered.index(name.lower())
  raise DataError(f"{path} has no column {name!r}; its columns are {stripped}. Set "
                  "data.smiles_column (or data.target_column) to one of them.")


def _file_kind(path: pathlib.Path) -> str:
  name = path.name.lower()
  for kind in ("csv", "smi"):
    if name.endswith(f".{kind}") or name.endswith(f".{kind}.gz"):
      return kind
  raise DataError(f"{path}: unsupported file type; use .csv, .csv.gz, .smi or .smi.gz.")


def read_smiles_file(path: str | pathlib.Path, smiles_column: str = "SMILES",
                     skipped: collections.Counter | None = None) -> list[str]:
  """All SMILES in a .csv/.csv.gz (column `smiles_column`) or .smi/.smi.gz file, in file order.

  See `iter_smiles_file`, which this collects.
  """
  return list(iter_smiles_file(path, smiles_column, skipped))


def iter_smiles_file(path: str | pathlib.Path, smiles_column: str = "SMILES",
                     skipped: collections.Counter | None = None) -> Iterator[str]:
  """The SMILES of a .csv/.csv.gz (column `smiles_column`) or .smi/.smi.gz file, in file order,
  read one line at a time (the file is never held whole).

  A .smi line is `SMILES [anything else]`; blank lines, `#` comments and a header line whose first
  field is `smiles_column` are skipped. CSV rows without a SMILES in that column are skipped and
  counted in `skipped` ("no_smiles"), as are lines that are not UTF-8 ("not_utf8"); without a
  `skipped` counter such a line is an error naming the file and line. The file is checked (it
  exists, its type, its header) on the call, not at the first SMILES.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingInputError(f"No SMILES file at {path}; check data.corpus_path.")
  kind = _file_kind(path)
  lines = text_lines(path, skipped)
  if kind == "csv":
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
      raise DataError(f"{path} is empty; it needs a header line naming the {smiles_column!r} "
                      "column and one SMILES per row.")
    return _csv_smiles(reader, find_column(header, smiles_column, path), skipped)
  return _smi_smiles(lines, smiles_column)


def _csv_smiles(reader, column: int, skipped: collections.Counter | None) -> Iterator[str]:
  for row in reader:
    if len(row) > column and row[column].strip():
      yield row[column].strip()
    elif any(cell.strip() for cell in row) and skipped is not None:
      skipped["no_smiles"] += 1


def _smi_smiles(lines, smiles_column: str) -> Iterator[str]:
  emitted = False
  for line in lines:
    fields = line.split()
    if not fields or fields[0].startswith("#"):
      continue
    if not emitted and fields[0].lower() == smiles_column.lower():
      continue
    emitted = True
    yield fields[0]


def read_regression_csv(path: str | pathlib.Path, smiles_column: str = "smiles",
                        target_column: str = "") -> tuple[list[str], np.ndarray]:
  """SMILES and float targets [N, 1] from a UTF-8 CSV. `target_column=""` means the one column
  that is not the SMILES column (a two-column `smiles,target` file). A row with a missing, non-
  numeric or non-finite target, or a line that is not UTF-8, is a DataError naming the file and
  line: a benchmark's rows are not dropped silently."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingInputError(f"No CSV at {path}.")
  reader = csv.reader(text_lines(path))
  header = next(reader, None)
  if header is None:
    raise DataError(f"{path} is empty; it needs a header line and one molecule per row.")
  smiles_index = find_column(header, smiles_column, path)
  if target_column:
    target_index = find_column(header, target_column, path)
  else:
    others = [i for i in range(len(header)) if i != smiles_index]
    if len(others) != 1:
      raise DataError(f"{path} has columns {header}; set data.target_column to the target.")
    target_index = others[0]
  smiles, targets = [], []
  for row in reader:
    if not any(cell.strip() for cell in row):
      continue
    try:
      target = float(row[target_index])
    except (ValueError, IndexError) as e:
      raise DataError(f"{path}:{reader.line_num}: no numeric target in column "
                      f"{header[target_index]!r} ({e}).") from e
    if not np.isfinite(target):
      raise DataError(f"{path}:{reader.line_num}: the target in column {header[target_index]!r} "
                      f"is {target}; give a finite number or remove the row.")
    targets.append(target)
    smiles.append(row[smiles_index].strip())
  return smiles, np.asarray(targets, np.float32)[:, None]
