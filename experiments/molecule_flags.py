"""The flags that name a labelled molecule set, shared by `experiments.embed` and
`experiments.ecfp4_baseline`.

  --data=bbbp                      a registered set (cmim_jax/data/moleculenet.py), or
  --data=mine.csv --smiles_column=smiles --target_columns=a,b --task_type=multilabel
                                   any CSV: labels 0/1/empty for binary and multilabel, numbers
                                   for regression; --target_columns empty = every other column.
"""

from __future__ import annotations

import pathlib
from typing import Any

from absl import flags

from cmim_jax.data import molecule_files, moleculenet

_DATA = flags.DEFINE_string(
    "data", None, "A labelled molecule set: a registered name "
    f"({', '.join(moleculenet.MOLECULENET)}) or a .csv file.")
_SMILES_COLUMN = flags.DEFINE_string("smiles_column", "smiles", "SMILES column of --data=FILE.")
_TARGET_COLUMNS = flags.DEFINE_list(
    "target_columns", [], "Label / target columns of --data=FILE; empty = all but the SMILES.")
_TASK_TYPE = flags.DEFINE_enum("task_type", molecule_files.REGRESSION, molecule_files.TASK_TYPES,
                               "Task type of --data=FILE.")


def is_csv(data: str) -> bool:
  return data not in moleculenet.MOLECULENET and pathlib.Path(data).suffix.lower() in (".csv",
                                                                                      ".gz")


def data_overrides() -> dict[str, Any]:
  """`config.data` fields for --data and its columns; {} without --data."""
  if not _DATA.value:
    return {}
  if not is_csv(_DATA.value):
    return {"name": _DATA.value}
  return {"name": moleculenet.CSV_DATASET, "csv_path": str(pathlib.Path(_DATA.value).absolute()),
          "csv_smiles_column": _SMILES_COLUMN.value,
          "target_columns": ",".join(_TARGET_COLUMNS.value), "task_type": _TASK_TYPE.value}
