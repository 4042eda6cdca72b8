"""SMILES corpora for pretraining, MoleculeNet regression sets, and their splits.

Pretraining corpus (`data.corpus="moses"` or `data.corpus_path`):
  * any `.csv`, `.csv.gz`, `.smi` or `.smi.gz` file with a SMILES column (`data.smiles_column`;
    `.smi` files hold the SMILES in their first whitespace-separated field);
  * MOSES from `data.data_dir` (a folder with `train.csv[.gz]` and `test.csv[.gz]`), else the cache,
    else its public download (the molecularsets/moses repository), verified by SHA-256.
  Molecules RDKit cannot parse, text that is not SMILES, and SMILES longer than `data.max_length`
  tokens are skipped and counted; they never stop a run.

MoleculeNet (`esol`, `freesolv`, `lipophilicity`) come from `data.data_dir` (MoleculeNet's file
names and layouts, or two-column `smiles,<target>` files named esol.csv, freesolv.csv, lipo.csv),
else the cache, else MoleculeNet's public bucket. A generic regression CSV (`smiles_csv`) is read from
`data.csv_path`. Splits: random 80/10/10 over several seeds and a Bemis-Murcko scaffold split.

RDKit is the `chem` extra: pip install 'cmim-jax[chem]'.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import gzip
import pathlib
import zlib
from typing import Iterator, Sequence

import ml_collections
import numpy as np
from absl import logging

from cmim_jax.data import download as download_lib
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.errors import ConfigError, DataError, DataUnavailableError, MissingInputError

SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST = 0, 1, 2
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# MOSES (Polykovskiy et al. 2020). The SHA-256 are the Git LFS object ids of data/{train,test}.csv
# in molecularsets/moses (columns SMILES,SPLIT); ../shared/data/moses holds their SMILES column.
MOSES_URL = "https://media.githubusercontent.com/media/molecularsets/moses/master/data/"
MOSES_SHA256 = {
    "train": "49fe1aae29604ec0f5023ea34edc8789415f954138f2903dabd005a4b888a961",
    "test": "257165e8f1e1be2d5712db51c93d2b1544564b782dc303d7d19c887c21a858e6",
}

# The most bytes one download may have (MOSES's train.csv is about 75 MB).
MAX_DOWNLOAD_BYTES = 256 << 20
MOLECULENET_URL = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"


def _rdkit_chem():
  try:
    from rdkit import Chem  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "Molecule data needs RDKit: pip install 'cmim-jax[chem]' (or pip install rdkit).") from e
  return Chem


@contextlib.contextmanager
def _quiet_rdkit():
  """Silences RDKit's per-molecule parse errors (we count them instead)."""
  from rdkit import RDLogger  # pylint: disable=g-import-not-at-top
  RDLogger.DisableLog("rdApp.*")
  try:
    yield
  finally:
    RDLogger.EnableLog("rdApp.*")


# ---------------------------------------------------------------------------------------------
# Reading SMILES files.


def _text_lines(path: pathlib.Path, skipped: collections.Counter | None = None):
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


def _find_column(header: Sequence[str], name: str, path) -> int:
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
  lines = _text_lines(path, skipped)
  if kind == "csv":
    reader = _csv_reader(lines)
    header = next(reader, None)
    if header is None:
      raise DataError(f"{path} is empty; it needs a header line naming the {smiles_column!r} "
                      "column and one SMILES per row.")
    return _csv_smiles(reader, _find_column(header, smiles_column, path), skipped)
  return _smi_smiles(lines, smiles_column)


# csv's default field limit (128 KiB) would stop the whole file at one very long SMILES (a
# polymer); such a row is read and then dropped as too long (counted by `filter_smiles`).
_CSV_FIELD_LIMIT = 2**28


def _csv_reader(lines):
  csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
  return csv.reader(lines)


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


def canonicalize(smiles: str) -> str | None:
  """RDKit's canonical SMILES, or None when RDKit cannot parse `smiles`."""
  with _quiet_rdkit():
    mol = _rdkit_chem().MolFromSmiles(smiles)
  return None if mol is None else _rdkit_chem().MolToSmiles(mol)


def is_valid_smiles(smiles: str) -> bool:
  """Whether RDKit parses `smiles` into a molecule (an empty string is not one)."""
  if not smiles:
    return False
  with _quiet_rdkit():
    return _rdkit_chem().MolFromSmiles(smiles) is not None


def filter_smiles(smiles: Sequence[str], max_tokens: int, *, canonical: bool = False,
                  check_validity: bool = True) -> tuple[list[str], list[list[str]], FilterCounts]:
  """Keeps the SMILES that RDKit parses (when `check_validity`) and that tokenise into at most
  `max_tokens` tokens, optionally replaced by RDKit's canonical form.

  Returns:
    (kept SMILES, their token lists, counts of what was skipped and why).
  """
  Chem = _rdkit_chem() if (check_validity or canonical) else None  # pylint: disable=invalid-name
  counts = FilterCounts(read=len(smiles))
  kept, kept_tokens = [], []
  with _quiet_rdkit():
    for s in smiles:
      if Chem is not None:
        mol = Chem.MolFromSmiles(s)
        if mol is None:
          counts.invalid += 1
          continue
        if canonical:
          s = Chem.MolToSmiles(mol)
      try:
        tokens = smiles_lib.tokenize(s)
      except smiles_lib.TokenizeError:
        counts.untokenizable += 1
        continue
      if len(tokens) > max_tokens:
        counts.too_long += 1
        continue
      kept.append(s)
      kept_tokens.append(tokens)
  counts.kept = len(kept)
  return kept, kept_tokens, counts


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
    smiles = subsample(read_smiles_file(path, data_config.smiles_column, skipped), 0, rng)
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
  train = subsample(read_smiles_file(train_path, "SMILES", skipped),
                     data_config.max_train_molecules, rng)
  test = subsample(read_smiles_file(test_path, "SMILES", skipped), data_config.num_test_molecules,
                    rng)
  return Corpus(train, test, f"moses:{source}", dict(skipped))


# ---------------------------------------------------------------------------------------------
# MoleculeNet regression sets.


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


def read_regression_csv(path: str | pathlib.Path, smiles_column: str = "smiles",
                        target_column: str = "") -> tuple[list[str], np.ndarray]:
  """SMILES and float targets [N, 1] from a UTF-8 CSV. `target_column=""` means the one column
  that is not the SMILES column (a two-column `smiles,target` file). A row with a missing, non-
  numeric or non-finite target, or a line that is not UTF-8, is a DataError naming the file and
  line: a benchmark's rows are not dropped silently."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingInputError(f"No CSV at {path}.")
  reader = _csv_reader(_text_lines(path))
  header = next(reader, None)
  if header is None:
    raise DataError(f"{path} is empty; it needs a header line and one molecule per row.")
  smiles_index = _find_column(header, smiles_column, path)
  if target_column:
    target_index = _find_column(header, target_column, path)
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


def _is_tokenizable(smiles: str) -> bool:
  try:
    smiles_lib.tokenize(smiles)
  except smiles_lib.TokenizeError:
    return False
  return True


def _drop_invalid(smiles: list[str], targets: np.ndarray, what: str):
  rdkit_valid = np.array([is_valid_smiles(s) for s in smiles], bool)
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
                                 max_bytes=MAX_DOWNLOAD_BYTES)
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
      raise ConfigError("data.name='smiles_csv' needs data.csv_path (a CSV with a SMILES column "
                        "and a numeric target column).")
    path = pathlib.Path(data_config.csv_path)
    smiles, targets = read_regression_csv(path, data_config.get("csv_smiles_column", "smiles"),
                                          data_config.get("target_column", ""))
    source = f"file:{path}"
  elif name in MOLECULENET:
    path, layout, source = _moleculenet_file(MOLECULENET[name], data_config)
    smiles, targets = read_regression_csv(path, layout.smiles_column, layout.target_column)
  else:
    raise ConfigError(f"Unknown regression set {name!r}; choose one of {REGRESSION_DATASETS}.")
  smiles, targets = _drop_invalid(smiles, targets, f"{name} ({path})")
  logging.info("Regression set %s served by %s: %d molecules.", name, source, len(smiles))
  return RegressionSet(smiles, targets, source)


# ---------------------------------------------------------------------------------------------
# Splits: int8 [N] with 0 = train, 1 = valid, 2 = test.


def _split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int]:
  if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
    raise ConfigError(f"Split fractions must be 3 non-negative numbers summing to 1, got "
                      f"{fractions}.")
  num_train = int(round(fractions[0] * n))
  return num_train, int(round((fractions[0] + fractions[1]) * n))


def random_split(num: int, seed: int, fractions: Sequence[float] = SPLIT_FRACTIONS) -> np.ndarray:
  """A random train/valid/test assignment int8 [num] with the given fractions."""
  train_end, valid_end = _split_sizes(num, fractions)
  order = np.random.default_rng(seed).permutation(num)
  split = np.full((num,), SPLIT_TEST, np.int8)
  split[order[:train_end]] = SPLIT_TRAIN
  split[order[train_end:valid_end]] = SPLIT_VALID
  return split


def murcko_scaffold(smiles: str) -> str:
  """The Bemis-Murcko scaffold of a molecule as SMILES ("" for acyclic molecules)."""
  from rdkit.Chem.Scaffolds import MurckoScaffold  # pylint: disable=g-import-not-at-top
  with _quiet_rdkit():
    mol = _rdkit_chem().MolFromSmiles(smiles)
  if mol is None:
    raise DataError(f"RDKit cannot parse {smiles!r}; drop it before the scaffold split.")
  return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def scaffold_split(smiles: Sequence[str],
                   fractions: Sequence[float] = SPLIT_FRACTIONS) -> np.ndarray:
  """Bemis-Murcko scaffold split int8 [N]: molecules sharing a scaffold share a split.

  Scaffold groups, largest first (ties: first occurrence), fill train up to its fraction, then
  valid, then test (the MoleculeNet / DeepChem procedure), so test holds the rarer scaffolds.
  """
  groups: dict[str, list[int]] = collections.defaultdict(list)
  for i, s in enumerate(smiles):
    groups[murcko_scaffold(s)].append(i)
  train_end, valid_end = _split_sizes(len(smiles), fractions)
  split = np.full((len(smiles),), SPLIT_TEST, np.int8)
  num_train = num_valid = 0
  for members in sorted(groups.values(), key=lambda g: (-len(g), g[0])):
    if num_train + len(members) <= train_end:
      split[members] = SPLIT_TRAIN
      num_train += len(members)
    elif num_train + num_valid + len(members) <= valid_end:
      split[members] = SPLIT_VALID
      num_valid += len(members)
  return split


def first_occurrences(smiles: Sequence[str]) -> np.ndarray:
  """int [N]: for each row, the first row with the same canonical SMILES (itself if none)."""
  first: dict[str, int] = {}
  return np.array([first.setdefault(canonicalize(s) or s, row) for row, s in enumerate(smiles)],
                  np.int64)


def split_annotations(smiles: Sequence[str], num_random_splits: int = 3) -> dict[str, np.ndarray]:
  """{"split_random0": ..., "split_random<k>": ..., "split_scaffold": ...}, each int8 [N].

  A row that repeats a molecule (same canonical SMILES) is kept in the split of the molecule's
  first row, so no molecule is in both train and test; the count is logged. A set without
  repeats gets the same splits as before this rule.
  """
  out = {f"split_random{seed}": random_split(len(smiles), seed)
         for seed in range(num_random_splits)}
  out["split_scaffold"] = scaffold_split(smiles)
  first = first_occurrences(smiles)
  repeats = int(np.sum(first != np.arange(len(smiles))))
  if repeats:
    logging.warning("%d rows repeat a molecule (same canonical SMILES) of %d molecules; each is "
                    "kept in the split of the molecule's first row.", repeats,
                    len(np.unique(first[first != np.arange(len(smiles))])))
  return {name: split[first] for name, split in out.items()}


__all__ = [
    "Corpus", "CsvLayout", "DataUnavailableError", "FilterCounts", "MOLECULENET", "MOSES_SHA256",
    "RegressionSet", "canonicalize", "filter_smiles", "first_occurrences", "is_valid_smiles",
    "load_corpus", "load_regression_set", "moses_file", "murcko_scaffold", "random_split",
    "read_regression_csv", "read_smiles_file", "scaffold_split", "split_annotations",
]
