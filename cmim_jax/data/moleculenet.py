"""Labelled molecule sets: the MoleculeNet registry and any labelled CSV.

MoleculeNet (`esol`, `freesolv`, `lipophilicity`) come from `data.data_dir` (MoleculeNet's file
names and layouts, or two-column `smiles,<target>` files named esol.csv, freesolv.csv, lipo.csv),
else the cache, else MoleculeNet's public bucket, verified by SHA-256. A generic regression CSV
(`smiles_csv`) is read from `data.csv_path`.

RDKit is the `chem` extra: pip install 'cmim-jax[chem]'.
"""

from __future__ import annotations

import dataclasses
import pathlib

import ml_collections
import numpy as np
from absl import logging

from cmim_jax.data import download as download_lib
from cmim_jax.data import molecule_files, molecules
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.errors import DataUnavailableError, MissingInputError

MOLECULENET_URL = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"


@dataclasses.dataclass(frozen=True)
class CsvLayout:
  """A CSV file name and the columns holding the SMILES and the regression target."""

  file_name: str
  smiles_column: str
  target_column: str


@dataclasses.dataclass(frozen=True)
class MoleculeNetSpec:
  """A MoleculeNet regression set: its public file (first layout) and accepted local layouts.

  `sha256` lists the accepted digests of the public file; empty means none is pinned, and a
  download then needs `data.download_sha256`.
  """

  name: str
  layouts: tuple[CsvLayout, ...]
  sha256: tuple[str, ...]


# ESOL and FreeSolv digests: of the MoleculeNet-layout copies in ../shared/data/moleculenet (not
# compared byte for byte with today's bucket). Lipophilicity: no trustworthy digest was found.
MOLECULENET = {
    "esol": MoleculeNetSpec(
        "esol",
        (CsvLayout("delaney-processed.csv", "smiles", "measured log solubility in mols per litre"),
         CsvLayout("esol.csv", "smiles", "logSolubility")),
        ("e91dc7027cbaeec3872a45b2522c46676e483c123b1c97172839d858a2f26d9c",)),
    "freesolv": MoleculeNetSpec(
        "freesolv",
        (CsvLayout("SAMPL.csv", "smiles", "expt"), CsvLayout("freesolv.csv", "smiles", "freesolv")),
        ("a82c5da54d7615f02d77d327a602e152fb3ed604fc093c49fb806bff2fd2149d",)),
    "lipophilicity": MoleculeNetSpec(
        "lipophilicity",
        (CsvLayout("Lipophilicity.csv", "smiles", "exp"), CsvLayout("lipo.csv", "smiles", "lipo")),
        ()),
}


@dataclasses.dataclass(frozen=True)
class RegressionSet:
  """Molecules with regression targets: smiles (N), targets float32 [N, 1], and their source."""

  smiles: list[str]
  targets: np.ndarray
  source: str


def _is_tokenizable(smiles: str) -> bool:
  try:
    smiles_lib.tokenize(smiles)
  except smiles_lib.TokenizeError:
    return False
  return True


def _drop_invalid(smiles: list[str], targets: np.ndarray, what: str):
  rdkit_valid = np.array([molecules.is_valid_smiles(s) for s in smiles], bool)
  valid = rdkit_valid & np.array([_is_tokenizable(s) for s in smiles], bool)
  if not valid.all():
    logging.warning("%s: skipped %d entries RDKit cannot parse and %d that are no SMILES tokens.",
                    what, int((~rdkit_valid).sum()), int((rdkit_valid & ~valid).sum()))
  return [s for s, ok in zip(smiles, valid) if ok], targets[valid]


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
  if path.is_file():
    return path, layout, f"cache:{path.parent}"
  accepted = tuple(spec.sha256) + tuple(filter(None, [data_config.get("download_sha256", "")]))
  if not accepted:
    raise DataUnavailableError(
        f"No SHA-256 is pinned for MoleculeNet's {layout.file_name}, so it is not downloaded "
        f"unverified. Fix: download {MOLECULENET_URL}{layout.file_name} yourself and pass "
        "--config.data.data_dir=ITS_FOLDER, or pass --config.data.download_sha256=DIGEST with a "
        "digest you trust.")
  mirrors = data_config.get("mirrors") or (MOLECULENET_URL,)
  try:
    download_lib.download([m.rstrip("/") + "/" + layout.file_name for m in mirrors], path,
                          accepted, timeout=data_config.get("download_timeout", 30.0))
  except download_lib.DownloadError as e:
    raise DataUnavailableError(
        f"{e}\nFix: put {layout.file_name} in a folder and pass --config.data.data_dir=FOLDER."
    ) from e
  return path, layout, f"download:{path.parent}"


REGRESSION_DATASETS = (*MOLECULENET, "smiles_csv")


def load_regression_set(data_config: ml_collections.ConfigDict) -> RegressionSet:
  """The regression set `data.name` ("esol", "freesolv", "lipophilicity" or "smiles_csv", the
  latter from `data.csv_path` with `data.csv_smiles_column` / `data.target_column`). Entries
  RDKit cannot parse, or that the SMILES tokenizer rejects, are dropped and counted."""
  name = data_config.name
  if name == "smiles_csv":
    if not data_config.get("csv_path"):
      raise ValueError("data.name='smiles_csv' needs data.csv_path (a CSV with a SMILES column "
                       "and a numeric target column).")
    path = pathlib.Path(data_config.csv_path)
    smiles, targets = molecule_files.read_regression_csv(
        path, data_config.get("csv_smiles_column", "smiles"), data_config.get("target_column", ""))
    source = f"file:{path}"
  elif name in MOLECULENET:
    path, layout, source = _moleculenet_file(MOLECULENET[name], data_config)
    smiles, targets = molecule_files.read_regression_csv(path, layout.smiles_column,
                                                         layout.target_column)
  else:
    raise ValueError(f"Unknown regression set {name!r}; choose one of {REGRESSION_DATASETS}.")
  smiles, targets = _drop_invalid(smiles, targets, f"{name} ({path})")
  logging.info("Regression set %s served by %s: %d molecules.", name, source, len(smiles))
  return RegressionSet(smiles, targets, source)
