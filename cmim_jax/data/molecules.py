"""SMILES pretraining corpora, RDKit's checks of molecules, and the filter before tokenising.

Pretraining corpus (`data.corpus="moses"` or `data.corpus_path`):
  * any `.csv`, `.csv.gz`, `.smi` or `.smi.gz` file with a SMILES column (`data.smiles_column`;
    `.smi` files hold the SMILES in their first whitespace-separated field), read by
    `cmim_jax.data.molecule_files`;
  * MOSES from `data.data_dir` (a folder with `train.csv[.gz]` and `test.csv[.gz]`), else the cache,
    else its public download (the molecularsets/moses repository), verified by SHA-256.
  Molecules RDKit cannot parse, text that is not SMILES, and SMILES longer than `data.max_length`
  tokens are skipped and counted; they never stop a run.

Labelled sets (MoleculeNet, any CSV) are in `cmim_jax.data.moleculenet`, their splits in
`cmim_jax.data.molecule_splits`. RDKit is the `chem` extra: pip install 'cmim-jax[chem]'.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip
import pathlib
from typing import Sequence

import ml_collections
import numpy as np
from absl import logging

from cmim_jax.data import download as download_lib
from cmim_jax.data import molecule_files
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.errors import ConfigError, DataError, DataUnavailableError, MissingInputError

# MOSES (Polykovskiy et al. 2020). The SHA-256 are the Git LFS object ids of data/{train,test}.csv
# in molecularsets/moses (columns SMILES,SPLIT); ../shared/data/moses holds their SMILES column.
MOSES_URL = "https://media.githubusercontent.com/media/molecularsets/moses/master/data/"
MOSES_SHA256 = {
    "train": "49fe1aae29604ec0f5023ea34edc8789415f954138f2903dabd005a4b888a961",
    "test": "257165e8f1e1be2d5712db51c93d2b1544564b782dc303d7d19c887c21a858e6",
}


def rdkit_chem():
  try:
    from rdkit import Chem  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "Molecule data needs RDKit: pip install 'cmim-jax[chem]' (or pip install rdkit).") from e
  return Chem


@contextlib.contextmanager
def quiet_rdkit():
  """Silences RDKit's per-molecule parse errors (we count them instead)."""
  from rdkit import RDLogger  # pylint: disable=g-import-not-at-top
  RDLogger.DisableLog("rdApp.*")
  try:
    yield
  finally:
    RDLogger.EnableLog("rdApp.*")


# ---------------------------------------------------------------------------------------------
# Filtering and tokenising.


@dataclasses.dataclass
class FilterCounts:
  """How many SMILES were read, kept, and skipped for each reason."""

  read: int = 0
  kept: int = 0
  invalid: int = 0  # RDKit could not parse them.
  untokenizable: int = 0  # Characters that are no SMILES tokens.
  too_long: int = 0  # More than max_length tokens.

  def log(self, what: str) -> None:
    logging.info("%s: read %d SMILES, kept %d; skipped %d RDKit-invalid, %d untokenizable, "
                 "%d longer than the token limit.", what, self.read, self.kept, self.invalid,
                 self.untokenizable, self.too_long)


def canonicalize(smiles: str, keep_stereo: bool = True) -> str | None:
  """RDKit's canonical SMILES, or None when RDKit cannot parse `smiles`.

  Explicit hydrogen atoms (`[H]`) become implicit where RDKit allows (it keeps those a stereo
  centre or an isotope needs, and bracket H counts such as `[nH]`); `keep_stereo=False` also drops
  stereo marks (`@`, `@@`, `/`, `\\`) and isotopes (RDKit's non-isomeric SMILES).
  """
  with quiet_rdkit():
    mol = rdkit_chem().MolFromSmiles(smiles)
  return None if mol is None else rdkit_smiles(mol, keep_stereo)


def rdkit_smiles(mol, keep_stereo: bool = True) -> str:
  """RDKit's canonical SMILES of `mol`; without stereo also without isotopes, so hydrogens that
  were explicit only for their isotope (`[2H]`) become implicit."""
  Chem = rdkit_chem()  # pylint: disable=invalid-name
  if not keep_stereo:
    mol = Chem.Mol(mol)
    for atom in mol.GetAtoms():
      atom.SetIsotope(0)
    mol = Chem.RemoveHs(mol)
  return Chem.MolToSmiles(mol, isomericSmiles=keep_stereo)


def is_valid_smiles(smiles: str) -> bool:
  """Whether RDKit parses `smiles` into a molecule (an empty string is not one)."""
  if not smiles:
    return False
  with quiet_rdkit():
    return rdkit_chem().MolFromSmiles(smiles) is not None


def filter_smiles(smiles: Sequence[str], max_tokens: int | None, *, canonical: bool = False,
                  keep_stereo: bool = True, check_validity: bool = True,
                  scheme: str = smiles_lib.DEFAULT_SCHEME
                  ) -> tuple[list[str], list[list[str]], FilterCounts]:
  """Keeps the SMILES that RDKit parses (when `check_validity`) and that tokenise (with `scheme`)
  into at most `max_tokens` tokens (None: any number), optionally replaced by RDKit's canonical
  form (`canonical`, or `keep_stereo=False`: see `canonicalize`).

  Returns:
    (kept SMILES, their token lists, counts of what was skipped and why).
  """
  canonical = canonical or not keep_stereo
  Chem = rdkit_chem() if (check_validity or canonical) else None  # pylint: disable=invalid-name
  counts = FilterCounts(read=len(smiles))
  kept, kept_tokens = [], []
  with quiet_rdkit():
    for s in smiles:
      if Chem is not None:
        mol = Chem.MolFromSmiles(s)
        if mol is None:
          counts.invalid += 1
          continue
        if canonical:
          s = rdkit_smiles(mol, keep_stereo)
      try:
        tokens = smiles_lib.tokenize(s, scheme)
      except smiles_lib.TokenizeError:
        counts.untokenizable += 1
        continue
      if max_tokens is not None and len(tokens) > max_tokens:
        counts.too_long += 1
        continue
      kept.append(s)
      kept_tokens.append(tokens)
  counts.kept = len(kept)
  return kept, kept_tokens, counts


def drop_longer(kept: list[str], kept_tokens: list[list[str]], counts: FilterCounts,
                max_tokens: int) -> tuple[list[str], list[list[str]], FilterCounts]:
  """`filter_smiles`' output without the SMILES of more than `max_tokens` tokens (counted)."""
  short = [i for i, tokens in enumerate(kept_tokens) if len(tokens) <= max_tokens]
  counts = dataclasses.replace(counts, kept=len(short),
                               too_long=counts.too_long + len(kept) - len(short))
  return [kept[i] for i in short], [kept_tokens[i] for i in short], counts


# ---------------------------------------------------------------------------------------------
# The pretraining corpus.


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Raw (unfiltered) SMILES of a pretraining corpus, where they came from, and how many file rows
  were skipped per cause ("not_utf8", "no_smiles")."""

  train: list[str]
  test: list[str]
  source: str
  skipped_rows: dict[str, int] = dataclasses.field(default_factory=dict)


def subsample(items: list[str], limit: int, rng: np.random.Generator) -> list[str]:
  """A random `limit` of `items` in random order (all of them, shuffled, when limit <= 0)."""
  order = rng.permutation(len(items))
  if limit > 0:
    order = order[:limit]
  return [items[i] for i in order]


# The most bytes one download may have (MOSES's train.csv is about 75 MB).
MAX_DOWNLOAD_BYTES = 256 << 20


def _gunzipped_sha256(data: bytes) -> str:
  return download_lib.sha256_of(gzip.decompress(data))


def _find_moses_file(folder: pathlib.Path, split: str) -> pathlib.Path | None:
  for name in (f"{split}.csv.gz", f"{split}.csv"):
    if (folder / name).is_file():
      return folder / name
  return None


def moses_file(split: str, data_config: ml_collections.ConfigDict) -> tuple[pathlib.Path, str]:
  """The MOSES `split` ("train"/"test") file: from data.data_dir, the cache, or a verified
  download. Returns (path, source description)."""
  if data_config.get("data_dir"):
    folder = pathlib.Path(data_config.data_dir)
    path = _find_moses_file(folder, split)
    if path is None:
      raise MissingInputError(
          f"data.data_dir={folder} has no MOSES {split}.csv or {split}.csv.gz; point it at the "
          "folder with the MOSES CSVs (column SMILES) or leave it empty to download them.")
    return path, f"data_dir:{folder}"
  folder = download_lib.cache_dir() / "moses"
  path = _find_moses_file(folder, split)
  if path is not None:
    digest = _gunzipped_sha256 if path.suffix == ".gz" else download_lib.sha256_of
    if download_lib.verified_in_cache(path, [MOSES_SHA256[split]], digest=digest):
      return path, f"cache:{folder}"
    logging.warning("The cached %s does not match MOSES's SHA-256; downloading it again.", path)
  mirrors = data_config.get("mirrors") or (MOSES_URL,)
  try:
    path = download_lib.download([m.rstrip("/") + f"/{split}.csv" for m in mirrors],
                                 folder / f"{split}.csv", [MOSES_SHA256[split]],
                                 timeout=data_config.get("download_timeout", 30.0),
                                 max_bytes=MAX_DOWNLOAD_BYTES)
  except download_lib.DownloadError as e:
    raise DataUnavailableError(
        f"{e}\nFix: put MOSES train.csv[.gz] and test.csv[.gz] in a folder and pass "
        f"--config.data.data_dir=FOLDER, or copy them into {folder}.") from e
  return path, f"download:{folder}"


def load_corpus(data_config: ml_collections.ConfigDict, seed: int) -> Corpus:
  """The raw pretraining corpus named by `data.corpus` / `data.corpus_path`.

  MOSES: up to `data.max_train_molecules` random molecules of its train file (0 = all) and
  `data.num_test_molecules` of its test file. A corpus file: `data.num_test_molecules` random
  molecules held out as the test set, up to `data.max_train_molecules` of the rest for training.
  """
  rng = np.random.default_rng(seed)
  skipped = collections.Counter()
  if data_config.get("corpus_path"):
    path = pathlib.Path(data_config.corpus_path)
    smiles = subsample(
        molecule_files.read_smiles_file(path, data_config.smiles_column, skipped), 0, rng)
    num_test = data_config.num_test_molecules
    if num_test >= len(smiles):
      raise DataError(f"{path} has {len(smiles)} SMILES, not more than "
                      f"data.num_test_molecules={num_test}; lower it or use a larger corpus.")
    train = smiles[num_test:]
    if data_config.max_train_molecules > 0:
      train = train[:data_config.max_train_molecules]
    return Corpus(train, smiles[:num_test], f"file:{path}", dict(skipped))
  if data_config.corpus != "moses":
    raise ConfigError(f"Unknown data.corpus {data_config.corpus!r}; use 'moses', or set "
                      "data.corpus_path to a .csv/.csv.gz/.smi file.")
  train_path, source = moses_file("train", data_config)
  test_path, _ = moses_file("test", data_config)
  train = subsample(molecule_files.read_smiles_file(train_path, "SMILES", skipped),
                    data_config.max_train_molecules, rng)
  test = subsample(molecule_files.read_smiles_file(test_path, "SMILES", skipped),
                   data_config.num_test_molecules, rng)
  return Corpus(train, test, f"moses:{source}", dict(skipped))
