"""A regex SMILES tokenizer and its vocabulary, saved as JSON beside the checkpoints.

Tokens: bracket atoms (`[nH]`, `[C@@H]`, `[13CH3+]`, ...), the organic-subset atoms including the
two-letter `Cl` and `Br`, aromatic atoms, bonds (`-=#$:/\\.`, the dot separating fragments),
branches, ring closures (`1`..`9` and `%10`..`%99`), and the rest of the SMILES punctuation (`*`,
`~`, `>`, `?`). A string is accepted only when its tokens concatenate back to it exactly, so for
every SMILES `encode` accepts whose tokens are all in the vocabulary, `decode(encode(s)) == s`.

Bracket atoms, by scheme (a vocabulary records the scheme it was built with, so a model always
tokenises as it was trained):
  "bracket_parts" (the default since format 2): every bracket atom is split into its grammar's
    fields, `[`, isotope, element, chirality, H count, charge, `:class`, `]`; `[C@@H]` ->
    `[ C @@ H ]`, `[13CH3+]` -> `[ 13 C H3 + ]`, `[Na+]` -> `[ Na + ]`. The element tokens are the
    same as outside brackets, so a bracket atom never seen in pretraining (a charge on an
    atom that was seen, a new stereo mark) costs one unknown field, not the whole atom.
  "bracket_atoms" (format 1 vocabularies, i.e. runs before it): every bracket atom is one token.

Stereo marks (`@`, `@@`, `/`, `\\`) and explicit hydrogens (`[H]` atoms, H counts in brackets)
are kept as written. `cmim_jax.data.molecules.standardize` canonicalises on request
(`data.canonicalize=True`: RDKit's canonical SMILES, which drops explicit `[H]` atoms; with
`data.keep_stereo=False` also stereo marks and isotopes).

Encoded sequences are int32 [max_tokens + 2]: BOS, the tokens, EOS, then PAD (id 0) up to length.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pathlib
import re
from typing import Iterable, Mapping, Sequence

import numpy as np
from absl import logging

from cmim_jax import files

PAD, BOS, EOS, UNK, MASK = "<pad>", "<bos>", "<eos>", "<unk>", "<mask>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, MASK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = range(len(SPECIAL_TOKENS))

# Order matters: bracket atoms first, then two-letter before one-letter elements, %nn before digits.
SMILES_REGEX = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|B|C|N|O|S|P|F|I|b|c|n|o|s|p|%\d{2}|\d|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|"
    r"\*|\$)")
# Inside a bracket atom: isotope, element (or *), chirality, H count, charge, atom class.
BRACKET_REGEX = re.compile(
    r"^\[(\d+)?([A-Z][a-z]?|[a-z][a-z]?|\*)(@@|@TH[12]|@AL[12]|@SP[1-3]|@TB\d{1,2}|@OH\d{1,2}|@)?"
    r"(H\d?)?(\+\+|--|[+-]\d{0,2})?(:\d+)?\]$")
BRACKET_PARTS, BRACKET_ATOMS = "bracket_parts", "bracket_atoms"
SCHEMES = (BRACKET_PARTS, BRACKET_ATOMS)
DEFAULT_SCHEME = BRACKET_PARTS
_FORMAT_VERSION = 2  # 1: a token list only (scheme "bracket_atoms"); 2: adds "scheme".


class TokenizeError(ValueError):
  """A string contains characters that are not SMILES tokens."""


def tokenize(smiles: str, scheme: str = DEFAULT_SCHEME) -> list[str]:
  """Splits a SMILES string into tokens (see the module docstring for `scheme`); raises
  TokenizeError when they do not cover it exactly."""
  if scheme not in SCHEMES:
    raise ValueError(f"Unknown tokenizer scheme {scheme!r}; choose one of {SCHEMES}.")
  tokens = SMILES_REGEX.findall(smiles)
  if "".join(tokens) != smiles:
    position = _first_uncovered(smiles)
    raise TokenizeError(
        f"{smiles!r} is not tokenizable as SMILES: unexpected {smiles[position:position + 5]!r} at "
        f"position {position}. Remove whitespace or the non-SMILES text (e.g. a name column).")
  if scheme == BRACKET_ATOMS:
    return tokens
  return [part for token in tokens for part in bracket_parts(token)]


def bracket_parts(token: str) -> list[str]:
  """A bracket atom's fields in order (`[C@@H]` -> `[`, `C`, `@@`, `H`, `]`); any other token, or
  a bracket atom outside the grammar (kept whole, still one token), as [token]."""
  match = BRACKET_REGEX.match(token) if token.startswith("[") else None
  if match is None:
    return [token]
  return ["[", *(field for field in match.groups() if field), "]"]


def _first_uncovered(smiles: str) -> int:
  position = 0
  for match in SMILES_REGEX.finditer(smiles):
    if match.start() != position:
      return position
    position = match.end()
  return position


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Token <-> id maps. `tokens[i]` is the token of id i; the first five are SPECIAL_TOKENS.
  `scheme` is how SMILES are split into these tokens (`tokenize`)."""

  tokens: tuple[str, ...]
  scheme: str = DEFAULT_SCHEME

  def __post_init__(self):
    if self.scheme not in SCHEMES:
      raise ValueError(f"Unknown tokenizer scheme {self.scheme!r}; choose one of {SCHEMES}.")
    if tuple(self.tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
      raise ValueError(f"A vocabulary must start with {SPECIAL_TOKENS}, got {self.tokens[:5]}.")
    if len(set(self.tokens)) != len(self.tokens):
      raise ValueError("A vocabulary must not repeat tokens.")
    object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})

  def __len__(self) -> int:
    return len(self.tokens)

  def tokenize(self, smiles: str) -> list[str]:
    """`tokenize(smiles)` with this vocabulary's scheme."""
    return tokenize(smiles, self.scheme)

  def token_ids(self, tokens: Sequence[str]) -> tuple[list[int], int]:
    """Ids of `tokens`, unseen ones mapped to UNK; returns (ids, number of unknown tokens)."""
    ids = [self._ids.get(token, UNK_ID) for token in tokens]
    return ids, sum(i == UNK_ID for i in ids)

  def encode(self, smiles: str, max_tokens: int) -> np.ndarray:
    """SMILES -> int32 [max_tokens + 2]: BOS, token ids, EOS, PAD...

    Raises TokenizeError for non-SMILES text and ValueError when it has more than `max_tokens`.
    Unseen tokens become UNK.
    """
    tokens = self.tokenize(smiles)
    if len(tokens) > max_tokens:
      raise ValueError(f"{smiles!r} has {len(tokens)} tokens, more than max_tokens={max_tokens}.")
    ids, _ = self.token_ids(tokens)
    out = np.full((max_tokens + 2,), PAD_ID, np.int32)
    out[:len(ids) + 2] = [BOS_ID, *ids, EOS_ID]
    return out

  def decode(self, ids: Iterable[int]) -> str:
    """Token ids -> SMILES: stops at the first EOS (or PAD), skips BOS; UNK and MASK appear as
    `<unk>` / `<mask>`, so a string holding them is no valid SMILES."""
    pieces = []
    for i in ids:
      i = int(i)
      if i in (EOS_ID, PAD_ID):
        break
      if i == BOS_ID:
        continue
      pieces.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
    return "".join(pieces)

  def to_json(self) -> str:
    return json.dumps({"format_version": _FORMAT_VERSION, "scheme": self.scheme,
                       "tokens": list(self.tokens)}, indent=1)

  @classmethod
  def from_json(cls, text: str) -> "Vocabulary":
    """Reads `to_json`'s text; a format 1 file (no scheme) tokenises bracket atoms whole."""
    data = json.loads(text)
    if data.get("format_version") not in (1, _FORMAT_VERSION) or not isinstance(
        data.get("tokens"), list):
      raise ValueError(f"Not a cmim_jax SMILES vocabulary (format_version 1 or {_FORMAT_VERSION} "
                       "with a token list).")
    return cls(tuple(data["tokens"]), data.get("scheme", BRACKET_ATOMS))

  def save(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes the vocabulary as JSON, atomically (temporary file renamed into place)."""
    return files.write_atomic(path, self.to_json())

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Vocabulary":
    path = pathlib.Path(path)
    if not path.is_file():
      raise FileNotFoundError(
          f"No vocabulary at {path}. Point data.vocab_path at the vocab.json that the pretraining "
          "run wrote into its workdir.")
    return cls.from_json(path.read_text(encoding="utf-8"))


def build_vocabulary(tokenized: Iterable[Sequence[str]], min_count: int = 1,
                     scheme: str = DEFAULT_SCHEME) -> Vocabulary:
  """The special tokens, then every token seen at least `min_count` times, most frequent first
  (ties in lexical order), so the same corpus always gives the same ids. `tokenized` holds token
  lists made with `scheme`."""
  return vocabulary_from_counts(
      collections.Counter(token for tokens in tokenized for token in tokens), min_count, scheme)


def vocabulary_from_counts(counts: Mapping[str, int], min_count: int = 1,
                           scheme: str = DEFAULT_SCHEME) -> Vocabulary:
  """`build_vocabulary` from token -> number of occurrences."""
  kept = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIAL_TOKENS),
                key=lambda t: (-counts[t], t))
  return Vocabulary(SPECIAL_TOKENS + tuple(kept), scheme)


def encode_batch(vocab: Vocabulary, tokenized: Sequence[Sequence[str]],
                 max_tokens: int) -> tuple[np.ndarray, int]:
  """Token lists (each at most `max_tokens` long) -> (int32 [N, max_tokens + 2], number of UNKs)."""
  out = np.full((len(tokenized), max_tokens + 2), PAD_ID, np.int32)
  unknown = 0
  for row, tokens in enumerate(tokenized):
    if len(tokens) > max_tokens:
      raise ValueError(f"Row {row} has {len(tokens)} tokens, more than max_tokens={max_tokens}.")
    ids, num_unknown = vocab.token_ids(tokens)
    unknown += num_unknown
    out[row, :len(ids) + 2] = [BOS_ID, *ids, EOS_ID]
  return out, unknown


def decode_batch(vocab: Vocabulary, ids: np.ndarray) -> list[str]:
  """int [N, L] -> N SMILES strings (see `Vocabulary.decode`)."""
  return [vocab.decode(row) for row in np.asarray(ids)]


COVERAGE_WARNING = 0.01  # Warn when more than 1 % of molecules are cut or of tokens unknown.


@dataclasses.dataclass(frozen=True)
class Coverage:
  """How much of a molecule set a trained model sees: molecules longer than `max_tokens` (cut to
  it) and tokens the vocabulary lacks (mapped to UNK), over `molecules` SMILES of `tokens`
  tokens in all (before cutting)."""

  molecules: int
  truncated: int
  tokens: int
  unknown_tokens: int
  max_tokens: int

  @property
  def truncated_fraction(self) -> float:
    return self.truncated / max(self.molecules, 1)

  @property
  def unknown_fraction(self) -> float:
    return self.unknown_tokens / max(self.tokens, 1)

  def as_arrays(self) -> dict[str, np.ndarray]:
    """int64 scalars "coverage_<field>" for an embedding file's metadata."""
    return {f"coverage_{field.name}": np.int64(getattr(self, field.name))
            for field in dataclasses.fields(self)}

  def report(self, what: str) -> str:
    """Logs the figures (a warning when either fraction is above 1 %) and returns the line."""
    line = (f"{what}: {self.truncated} of {self.molecules} molecules "
            f"({self.truncated_fraction:.1%}) longer than max_length={self.max_tokens} tokens and "
            f"cut to it; {self.unknown_tokens} of {self.tokens} tokens "
            f"({self.unknown_fraction:.1%}) unknown to the trained vocabulary, read as {UNK}.")
    if max(self.truncated_fraction, self.unknown_fraction) > COVERAGE_WARNING:
      logging.warning("%s The embeddings see damaged molecules: pretrain on a corpus like these "
                      "(data.corpus_path), with a larger data.max_length, or canonicalise "
                      "(data.canonicalize / data.keep_stereo=False).", line)
    else:
      logging.info("%s", line)
    return line


def coverage(vocab: Vocabulary, tokenized: Sequence[Sequence[str]], max_tokens: int) -> Coverage:
  """The `Coverage` of token lists (uncut) under `vocab` and the length limit `max_tokens`."""
  return Coverage(
      molecules=len(tokenized), truncated=sum(len(t) > max_tokens for t in tokenized),
      tokens=sum(len(t) for t in tokenized),
      unknown_tokens=sum(vocab.token_ids(t)[1] for t in tokenized), max_tokens=max_tokens)


def length_percentile(tokenized: Iterable[Sequence[str]], percentile: float = 99.9) -> int:
  """The `percentile`-th percentile of the token counts, rounded up: a `data.max_length` that
  keeps that share of the corpus whole."""
  lengths = [len(tokens) for tokens in tokenized]
  if not lengths:
    raise ValueError("No SMILES to take a length percentile of.")
  return int(math.ceil(np.percentile(lengths, percentile)))
