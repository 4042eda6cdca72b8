"""Labelled molecule sets: the MoleculeNet registry and any labelled CSV.

A labelled set declares its task type (`molecule_files.TASK_TYPES`):
  regression   float targets [N, T] (ESOL, FreeSolv, Lipophilicity);
  binary       one 0/1 label column (BBBP, BACE, HIV);
  multilabel   several 0/1 label columns, empty cells = missing labels (ClinTox, Tox21, SIDER).
MoleculeNet sets come from `data.data_dir` (MoleculeNet's file names and layouts, or the
redistributed layouts listed beside them: two-column `smiles,<target>` files esol.csv,
freesolv.csv, lipo.csv; `smiles,p_np` bbbp.csv; `smiles,<12 tasks>` tox21.csv), else the cache,
else MoleculeNet's public bucket. A download is verified by SHA-256: ESOL's and FreeSolv's are
pinned; for the others no digest of the bucket's file could be verified (the shared bbbp.csv and
tox21.csv are a redistribution with another layout, so their digests are not the bucket's), so
their download needs `data.download_sha256` (a digest you trust) or a local copy in
`data.data_dir`. Any CSV (`data.name="smiles_csv"`) is read from `data.csv_path` with
`data.csv_smiles_column`, `data.target_columns` and `data.task_type`.

RDKit is the `chem` extra: pip install 'cmim-jax[chem]'.
"""

from __future__ import annotations

import dataclasses
import pathlib
import ml_collections
import numpy as np
from absl import logging

from cmim_jax.data import download as download_lib
from cmim_jax.data import molecule_files, molecule_splits, molecules
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.data.molecule_files import BINARY, MULTILABEL, REGRESSION
from cmim_jax.embedding import files as embedding_files
from cmim_jax.errors import ConfigError, DataUnavailableError, MissingInputError

MOLECULENET_URL = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"
CSV_DATASET = "smiles_csv"


@dataclasses.dataclass(frozen=True)
class CsvLayout:
  """A CSV file name, its SMILES column and its label / target columns (() = all others)."""

  file_name: str
  smiles_column: str
  target_columns: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MoleculeNetSpec:
  """A MoleculeNet set: its task type, its public file (first layout) and accepted local layouts.

  `sha256` lists the accepted digests of the public file; empty means none is pinned, and a
  download then needs `data.download_sha256`.
  """

  name: str
  task_type: str
  layouts: tuple[CsvLayout, ...]
  sha256: tuple[str, ...] = ()


TOX21_TASKS = ("NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD",
               "NR-PPAR-gamma", "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53")

# ESOL and FreeSolv digests: of the MoleculeNet-layout copies in ../shared/data/moleculenet (not
# compared byte for byte with today's bucket). The others: no trustworthy digest was found.
MOLECULENET = {spec.name: spec for spec in (
    MoleculeNetSpec(
        "esol", REGRESSION,
        (CsvLayout("delaney-processed.csv", "smiles",
                   ("measured log solubility in mols per litre",)),
         CsvLayout("esol.csv", "smiles", ("logSolubility",))),
        ("e91dc7027cbaeec3872a45b2522c46676e483c123b1c97172839d858a2f26d9c",)),
    MoleculeNetSpec(
        "freesolv", REGRESSION,
        (CsvLayout("SAMPL.csv", "smiles", ("expt",)),
         CsvLayout("freesolv.csv", "smiles", ("freesolv",))),
        ("a82c5da54d7615f02d77d327a602e152fb3ed604fc093c49fb806bff2fd2149d",)),
    MoleculeNetSpec(
        "lipophilicity", REGRESSION,
        (CsvLayout("Lipophilicity.csv", "smiles", ("exp",)),
         CsvLayout("lipo.csv", "smiles", ("lipo",)))),
    MoleculeNetSpec(
        "bbbp", BINARY,
        (CsvLayout("BBBP.csv", "smiles", ("p_np",)), CsvLayout("bbbp.csv", "smiles", ("p_np",)))),
    MoleculeNetSpec("bace", BINARY, (CsvLayout("bace.csv", "mol", ("Class",)),)),
    MoleculeNetSpec("hiv", BINARY, (CsvLayout("HIV.csv", "smiles", ("HIV_active",)),)),
    MoleculeNetSpec(
        "clintox", MULTILABEL,
        (CsvLayout("clintox.csv.gz", "smiles", ("FDA_APPROVED", "CT_TOX")),
         CsvLayout("clintox.csv", "smiles", ("FDA_APPROVED", "CT_TOX")))),
    MoleculeNetSpec(
        "tox21", MULTILABEL,
        (CsvLayout("tox21.csv.gz", "smiles", TOX21_TASKS),
         CsvLayout("tox21.csv", "smiles", TOX21_TASKS))),
    # SIDER's 27 label columns are every column but the SMILES.
    MoleculeNetSpec(
        "sider", MULTILABEL,
        (CsvLayout("sider.csv.gz", "smiles"), CsvLayout("sider.csv", "smiles"))),
)}
LABELLED_DATASETS = (*MOLECULENET, CSV_DATASET)


@dataclasses.dataclass(frozen=True)
class LabelledSet:
  """Molecules with labels or targets.

  Attributes:
    smiles: N SMILES (those RDKit parses).
    values: float32 [N, T]: regression targets, or 0/1 labels with NaN for a missing label.
    task_type: "regression", "binary" or "multilabel".
    task_names: the T column names.
    source: where the file came from.
  """

  smiles: list[str]
  values: np.ndarray
  task_type: str
  task_names: tuple[str, ...]
  source: str

  @property
  def is_regression(self) -> bool:
    return self.task_type == REGRESSION


def _is_tokenizable(smiles: str) -> bool:
  try:
    smiles_lib.tokenize(smiles)
  except smiles_lib.TokenizeError:
    return False
  return True


def _drop_invalid(smiles: list[str], values: np.ndarray, what: str):
  rdkit_valid = np.array([molecules.is_valid_smiles(s) for s in smiles], bool)
  valid = rdkit_valid & np.array([_is_tokenizable(s) for s in smiles], bool)
  if not valid.all():
    logging.warning("%s: skipped %d entries RDKit cannot parse and %d that are no SMILES tokens.",
                    what, int((~rdkit_valid).sum()), int((rdkit_valid & ~valid).sum()))
  return [s for s, ok in zip(smiles, valid) if ok], values[valid]


def _moleculenet_file(spec: MoleculeNetSpec, data_config) -> tuple[pathlib.Path, CsvLayout, str]:
  if data_config.get("data_dir"):
    folder = pathlib.Path(data_config.data_dir)
    for layout in spec.layouts:
      if (folder / layout.file_name).is_file():
        return folder / layout.file_name, layout, f"data_dir:{folder}"
    raise MissingInputError(
        f"data.data_dir={folder} has none of {[l.file_name for l in spec.layouts]} for "
        f"{spec.name}; point it at a folder with one of them or leave it empty to download.")
  layout = spec.layouts[0]
  path = download_lib.cache_dir() / "moleculenet" / layout.file_name
  accepted = tuple(spec.sha256) + tuple(filter(None, [data_config.get("download_sha256", "")]))
  if path.is_file() and (not accepted or download_lib.verified_in_cache(path, accepted)):
    return path, layout, f"cache:{path.parent}"  # (Nothing to verify a digest-less file with.)
  if not accepted:
    raise DataUnavailableError(
        f"No SHA-256 is pinned for MoleculeNet's {layout.file_name}, so it is not downloaded "
        f"unverified. Fix: download {MOLECULENET_URL}{layout.file_name} yourself and pass "
        "--config.data.data_dir=ITS_FOLDER, or pass --config.data.download_sha256=DIGEST with a "
        "digest you trust.")
  mirrors = data_config.get("mirrors") or (MOLECULENET_URL,)
  try:
    download_lib.cached_download([m.rstrip("/") + "/" + layout.file_name for m in mirrors], path,
                                 accepted, timeout=data_config.get("download_timeout", 30.0),
                                 max_bytes=molecules.MAX_DOWNLOAD_BYTES)
  except download_lib.DownloadError as e:
    raise DataUnavailableError(
        f"{e}\nFix: put {layout.file_name} in a folder and pass --config.data.data_dir=FOLDER."
    ) from e
  return path, layout, f"download:{path.parent}"


def _csv_settings(data_config: ml_collections.ConfigDict) -> tuple[str, tuple[str, ...], str]:
  """(SMILES column, target columns, task type) of `data.name="smiles_csv"`."""
  if not data_config.get("csv_path"):
    raise ConfigError("data.name='smiles_csv' needs data.csv_path (a CSV with a SMILES column and "
                      "label or target columns); from the command line: --data=FILE.csv.")
  columns = data_config.get("target_columns") or ()
  if isinstance(columns, str):
    columns = tuple(c.strip() for c in columns.split(",") if c.strip())
  if not columns and data_config.get("target_column"):
    columns = (data_config.target_column,)
  task_type = data_config.get("task_type") or REGRESSION
  if task_type not in molecule_files.TASK_TYPES:
    raise ConfigError(f"data.task_type={task_type!r}; choose one of {molecule_files.TASK_TYPES}.")
  return data_config.get("csv_smiles_column", "smiles"), tuple(columns), task_type


def load_labelled_set(data_config: ml_collections.ConfigDict) -> LabelledSet:
  """The labelled set `data.name`: a MoleculeNet set of `MOLECULENET`, or "smiles_csv" (see the
  module docstring). Entries RDKit cannot parse, or that the SMILES tokenizer rejects, are dropped
  and counted."""
  name = data_config.name
  if name == CSV_DATASET:
    path = pathlib.Path(data_config.csv_path or "")
    smiles_column, target_columns, task_type = _csv_settings(data_config)
    source = f"file:{path}"
  elif name in MOLECULENET:
    spec = MOLECULENET[name]
    path, layout, source = _moleculenet_file(spec, data_config)
    smiles_column, target_columns, task_type = (layout.smiles_column, layout.target_columns,
                                                spec.task_type)
  else:
    raise ConfigError(f"Unknown labelled set {name!r}; choose one of {LABELLED_DATASETS}.")
  smiles, values, names = molecule_files.read_labelled_csv(path, smiles_column, target_columns,
                                                           task_type)
  smiles, values = _drop_invalid(smiles, values, f"{name} ({path})")
  logging.info("%s set %s served by %s: %d molecules, %d task(s).", task_type, name, source,
               len(smiles), len(names))
  return LabelledSet(smiles, values, task_type, names, source)


def annotations(dataset: LabelledSet, num_random_splits: int = 3) -> dict[str, np.ndarray]:
  """What an embedding file stores beside the features of `dataset` (`cmim_jax.embedding.files`):
  "targets" float32 [N, T] (regression) or "binary_labels" float32 [N, T] (0/1, NaN = missing)
  with "task_names" [T]; and the split schemes "split_random<k>", "split_scaffold" int8 [N]."""
  key = embedding_files.TARGETS if dataset.is_regression else embedding_files.BINARY_LABELS
  return {key: dataset.values, embedding_files.TASK_NAMES: np.asarray(dataset.task_names, np.str_),
          **molecule_splits.split_annotations(dataset.smiles, num_random_splits)}
