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


# csv's default field limit (128 KiB) would stop the whole file at one very long SMILES (a
# polymer); such a row is read and then dropped as too long (counted by `filter_smiles`).
_CSV_FIELD_LIMIT = 2**28


def _csv_reader(lines):
  csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
  return csv.reader(lines)


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


def find_column(header: Sequence[str], name: str, path,
                fix: str = "Set data.smiles_column to one of them.") -> int:
  """Index of column `name` in `header` (exact match first, then case-insensitive); a DataError
  listing the columns and ending with `fix` otherwise."""
  stripped = [h.strip() for h in header]
  if name in stripped:
    return stripped.index(name)
  lowered = [h.lower() for h in stripped]
  if name.lower() in lowered:
    return lowered.index(name.lower())
  raise DataError(f"{path} has no column {name!r}; its columns are {stripped}. {fix}")


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
    reader = _csv_reader(lines)
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


REGRESSION, BINARY, MULTILABEL = "regression", "binary", "multilabel"
TASK_TYPES = (REGRESSION, BINARY, MULTILABEL)
_BINARY_CELLS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "": np.nan}


def _target_indices(header: Sequence[str], smiles_index: int, target_columns: Sequence[str],
                    path) -> list[int]:
  if target_columns:
    return [find_column(header, name, path, _COLUMN_FIX) for name in target_columns]
  others = [i for i in range(len(header)) if i != smiles_index]
  if not others:
    raise DataError(f"{path} has only the SMILES column; it needs label or target columns.")
  return others


_COLUMN_FIX = ("Name the columns with --smiles_column / --target_columns (config: "
               "data.csv_smiles_column / data.target_columns).")


def _cell_value(cell: str, task_type: str, where: str, column: str) -> float:
  """One label or target: a finite float (regression), 0/1/NaN for missing (binary)."""
  cell = cell.strip()
  if task_type != REGRESSION:
    if cell not in _BINARY_CELLS:
      raise DataError(f"{where}: column {column!r} holds {cell!r}; a {task_type} task takes 0, 1 "
                      "or an empty cell (missing label). Fix the cell, or pass "
                      "--task_type=regression for numeric targets.")
    return _BINARY_CELLS[cell]
  try:
    value = float(cell)
  except ValueError as e:
    raise DataError(f"{where}: no numeric target in column {column!r} ({cell!r}); give a number "
                    "or remove the row.") from e
  if not np.isfinite(value):
    raise DataError(f"{where}: the target in column {column!r} is {value}; give a finite number "
                    "or remove the row.")
  return value


def read_labelled_csv(path: str | pathlib.Path, smiles_column: str = "smiles",
                      target_columns: Sequence[str] = (), task_type: str = REGRESSION
                      ) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
  """SMILES and their labels or targets from a UTF-8 CSV.

  Args:
    path: the CSV, with a header line.
    smiles_column: the SMILES column (exact name, else case-insensitive).
    target_columns: the label / target columns; () = every column but the SMILES one (e.g. a
      two-column `smiles,target` file).
    task_type: "regression" (every cell a finite number), "binary" or "multilabel" (cells 0, 1
      or empty = missing; "binary" is the one-column case).

  Returns:
    (smiles [N], values float32 [N, T] (NaN = missing label), the T column names).

  Raises:
    DataError, naming the file and line: a missing column, a bad cell (a regression row is never
    dropped silently), a label column without any label, a line that is not UTF-8.
  """
  if task_type not in TASK_TYPES:
    raise DataError(f"Unknown task type {task_type!r}; choose one of {TASK_TYPES}.")
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingInputError(f"No CSV at {path}.")
  reader = _csv_reader(text_lines(path))
  header = next(reader, None)
  if header is None:
    raise DataError(f"{path} is empty; it needs a header line and one molecule per row.")
  smiles_index = find_column(header, smiles_column, path, _COLUMN_FIX)
  indices = _target_indices(header, smiles_index, target_columns, path)
  names = tuple(header[i].strip() for i in indices)
  smiles, rows = [], []
  for row in reader:
    if not any(cell.strip() for cell in row):
      continue
    where = f"{path}:{reader.line_num}"
    if len(row) <= max(smiles_index, *indices):
      raise DataError(f"{where}: {len(row)} cells, but the header names {len(header)} columns.")
    rows.append([_cell_value(row[i], task_type, where, header[i].strip()) for i in indices])
    smiles.append(row[smiles_index].strip())
  values = np.asarray(rows, np.float32).reshape(len(rows), len(indices))
  empty = [name for name, column in zip(names, values.T) if np.isnan(column).all()]
  if empty:
    raise DataError(f"{path}: column(s) {empty} hold no label in any row; drop them from "
                    "--target_columns (data.target_columns).")
  return smiles, values, names
