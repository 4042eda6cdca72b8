"""SMILES corpora converted once into a file of token ids, read a few rows at a time.

A token file is a folder with
  tokens.npy   int32 [N, max_tokens + 2]: BOS, token ids, EOS, PAD... (an ordinary .npy file);
  vocab.json   the vocabulary of those ids (`smiles.Vocabulary`);
  info.json    where the SMILES came from and how many were read, kept and skipped.
`build_token_file` makes it in one streaming pass that holds a chunk of SMILES at a time, never the
corpus: each chunk is filtered like `molecules.filter_smiles` and written with provisional ids
(first-seen order); at the end the vocabulary is fixed (`smiles.build_vocabulary`'s order, or a
given one) and the rows are rewritten with its ids, again a chunk at a time. `TokenFileSource`
reads rows with `os.pread` (no memory map, so pages it read do not stay in the process), which is
the random access a Grain pipeline (`cmim_jax.data.streaming`) needs.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time
from typing import Iterable, Iterator

import numpy as np

from cmim_jax.data import molecules
from cmim_jax.data import smiles as smiles_lib

TOKENS, VOCAB, INFO = "tokens.npy", "vocab.json", "info.json"
_CHUNK = 8192  # SMILES filtered and written at a time.
_FORMAT_VERSION = 2  # 2: the tokenizer scheme and keep_stereo are part of the folder name.


def folder_name(path: pathlib.Path, smiles_column: str, max_tokens: int, canonical: bool,
                vocab: smiles_lib.Vocabulary | None, keep_stereo: bool = True) -> str:
  """A folder name for the token file of `path` with these settings, e.g. `train-3f2a...`: it
  changes when the file (its path, size or modification time) or a setting changes."""
  stat = path.stat()
  key = json.dumps([_FORMAT_VERSION, str(path.resolve()), stat.st_size, stat.st_mtime_ns,
                    smiles_column, max_tokens, canonical, keep_stereo,
                    vocab.scheme if vocab else smiles_lib.DEFAULT_SCHEME,
                    vocab and list(vocab.tokens)])
  return f"{path.name.split('.')[0]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
  chunk = []
  for item in items:
    chunk.append(item)
    if len(chunk) == size:
      yield chunk
      chunk = []
  if chunk:
    yield chunk


def _provisional_rows(tokenized: list[list[str]], ids: dict[str, int], counts: collections.Counter,
                      width: int) -> np.ndarray:
  """Token lists -> int32 [n, width] with ids from `ids` (new tokens are added to it)."""
  rows = np.full((len(tokenized), width), smiles_lib.PAD_ID, np.int32)
  for row, tokens in enumerate(tokenized):
    counts.update(tokens)
    token_ids = [ids.setdefault(token, len(ids)) for token in tokens]
    rows[row, :len(tokens) + 2] = [smiles_lib.BOS_ID, *token_ids, smiles_lib.EOS_ID]
  return rows


def build_token_file(smiles: Iterable[str], folder: str | pathlib.Path, max_tokens: int, *,
                     canonical: bool = False, keep_stereo: bool = True,
                     vocab: smiles_lib.Vocabulary | None = None,
                     source: str = "") -> "TokenFile":
  """Filters, tokenises and writes `smiles` (any iterable, read once) into the token file `folder`.

  Args:
    smiles: the corpus, e.g. `molecule_files.iter_smiles_file(path)`.
    folder: created (atomically: built beside it, then renamed); must not exist yet.
    max_tokens: longer SMILES are skipped (counted), as in `molecules.filter_smiles`.
    canonical: write RDKit's canonical SMILES.
    keep_stereo: False: RDKit's canonical SMILES without stereo marks and isotopes.
    vocab: the ids (and tokenizer scheme) to use (tokens it lacks become UNK, counted); None:
      built from the corpus with the default scheme.
    source: where `smiles` came from, kept in info.json.

  Returns:
    The token file, opened.
  """
  folder = pathlib.Path(folder)
  tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  start = time.perf_counter()
  width = max_tokens + 2
  scheme = vocab.scheme if vocab else smiles_lib.DEFAULT_SCHEME
  ids = {token: i for i, token in enumerate(smiles_lib.SPECIAL_TOKENS)}
  counts, filtered = collections.Counter(), molecules.FilterCounts()
  raw_path = tmp / "provisional.int32"
  with open(raw_path, "wb") as raw:
    for chunk in _chunks(smiles, _CHUNK):
      _, tokenized, chunk_counts = molecules.filter_smiles(
          chunk, max_tokens, canonical=canonical, keep_stereo=keep_stereo, scheme=scheme)
      for field in dataclasses.fields(filtered):
        setattr(filtered, field.name,
                getattr(filtered, field.name) + getattr(chunk_counts, field.name))
      raw.write(_provisional_rows(tokenized, ids, counts, width).tobytes())
  if vocab is None:
    vocab = smiles_lib.vocabulary_from_counts(counts, scheme=scheme)
  final_ids = np.array([vocab.token_ids([token])[0][0] for token in ids], np.int32)
  num_unknown = sum(c for token, c in counts.items() if final_ids[ids[token]] == smiles_lib.UNK_ID)
  with open(raw_path, "rb") as raw, open(tmp / TOKENS, "wb") as out:  # Plain reads and writes:
    # no memory map, whose written pages would stay in the process.
    np.lib.format.write_array_header_1_0(
        out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)), "fortran_order": False,
              "shape": (filtered.kept, width)})
    while chunk := raw.read(_CHUNK * width * 4):
      out.write(final_ids[np.frombuffer(chunk, np.int32)].tobytes())
  raw_path.unlink()
  vocab.save(tmp / VOCAB)
  info = {"source": source, "max_tokens": max_tokens, "canonical": canonical,
          "keep_stereo": keep_stereo,
          "rows": dataclasses.asdict(filtered), "unknown_tokens": num_unknown,
          "build_seconds": round(time.perf_counter() - start, 1)}
  (tmp / INFO).write_text(json.dumps(info, indent=1) + "\n")
  os.replace(tmp, folder)
  return TokenFile(folder)


class TokenFile:
  """An opened token file: its vocabulary, info, and a source of its rows.

  Attributes:
    folder: the token file's folder.
    vocab: the vocabulary of its ids.
    info: the contents of info.json (source, counts of rows read, kept and skipped).
    source: `TokenFileSource` over tokens.npy.
  """

  def __init__(self, folder: str | pathlib.Path):
    self.folder = pathlib.Path(folder)
    self.vocab = smiles_lib.Vocabulary.load(self.folder / VOCAB)
    self.info = json.loads((self.folder / INFO).read_text(encoding="utf-8"))
    self.source = TokenFileSource(self.folder / TOKENS)

  def tokens(self, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows [start, stop) int32 [n, L] as a read-only memory map (for embedding them)."""
    return np.load(self.folder / TOKENS, mmap_mode="r")[start:stop]


class TokenFileSource:
  """Random access to the rows of an int32 [N, L] .npy file, by `os.pread` (Grain's
  `RandomAccessDataSource` protocol, plus `read` for many rows at once).

  `rows(start, stop)` views a range of them (e.g. the training rows after held-out ones). The file
  stays open for the object's lifetime; reads are thread-safe (no shared file offset).
  """

  def __init__(self, path: str | pathlib.Path, start: int = 0, stop: int | None = None):
    self.path = pathlib.Path(path)
    with open(self.path, "rb") as f:
      read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                     (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
      shape, fortran_order, dtype = read_header(f)
      self._offset = f.tell()
    if len(shape) != 2 or fortran_order or dtype != np.int32:
      raise ValueError(f"{self.path}: expected a C-ordered int32 [N, L] array, got {dtype} "
                       f"{shape}.")
    num_rows, self.width = shape
    stop = num_rows if stop is None else min(stop, num_rows)
    if not 0 <= start < stop:
      raise ValueError(f"{self.path}: rows [{start}, {stop}) are empty or outside its {num_rows}.")
    self.start, self.num_rows = start, stop - start
    self._row_bytes = self.width * 4
    self._fd = os.open(self.path, os.O_RDONLY)

  def __len__(self) -> int:
    return self.num_rows

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {"tokens": self.read(np.asarray([index]))["tokens"][0]}

  def read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    """{"tokens": int32 [len(rows), L]}: the rows `rows` (ints in [0, N)), in that order."""
    out = bytearray(len(rows) * self._row_bytes)
    view = memoryview(out)
    for i, row in enumerate(np.asarray(rows, np.int64)):
      if not 0 <= row < self.num_rows:
        raise IndexError(f"Row {row} outside [0, {self.num_rows}) of {self.path}.")
      chunk = os.pread(self._fd, self._row_bytes,
                       self._offset + (self.start + int(row)) * self._row_bytes)
      view[i * self._row_bytes:(i + 1) * self._row_bytes] = chunk
    return {"tokens": np.frombuffer(out, np.int32).reshape(len(rows), self.width)}

  def rows(self, start: int, stop: int | None = None) -> "TokenFileSource":
    """The source of rows [start, stop) of this one."""
    return TokenFileSource(self.path, self.start + start,
                           self.start + (self.num_rows if stop is None else stop))

  def __del__(self):
    if getattr(self, "_fd", None) is not None:
      os.close(self._fd)
