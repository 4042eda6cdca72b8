"""A regex SMILES tokenizer and its vocabulary, saved as JSON beside the checkpoints.

Tokens: bracket atoms (`[nH]`, `[C@@H]`, `[13CH3+]`, ...), the organic-subset atoms including the
two-letter `Cl` and `Br`, aromatic atoms, bonds (`-=#$:/\\.`), branches, ring closures (`1`..`9`
and `%10`..`%99`), and the rest of the SMILES punctuation (`*`, `~`, `>`, `?`). A string is
accepted only when its tokens concatenate back to it exactly, so for every SMILES `encode` accepts
whose tokens are all in the vocabulary, `decode(encode(s)) == s`.

Encoded sequences are int32 [max_tokens + 2]: BOS, the tokens, EOS, then PAD (id 0) up to length.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import re
from typing import Iterable, Mapping, Sequence

import numpy as np

from cmim_jax import files

PAD, BOS, EOS, UNK, MASK = "<pad>", "<bos>", "<eos>", "<unk>", "<mask>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, MASK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = range(len(SPECIAL_TOKENS))

# Order matters: bracket atoms first, then two-letter before one-letter elements, %nn before digits.
SMILES_REGEX = re.compile(
    r"(\[[^\[\]]+\]|Br|Cl|B|C|N|O|S|P|F|I|b|c|n|o|s|p|%\d{2}|\d|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|"
    r"\*|\$)")
_FORMAT_VERSION = 1


class TokenizeError(ValueError):
  """A string contains characters that are not SMILES tokens."""


def tokenize(smiles: str) -> list[str]:
  """Splits a SMILES string into tokens; raises TokenizeError when they do not cover it exactly."""
  tokens = SMILES_REGEX.findall(smiles)
  if "".join(tokens) != smiles:
    position = _first_uncovered(smiles)
    raise TokenizeError(
        f"{smiles!r} is not tokenizable as SMILES: unexpected {smiles[position:position + 5]!r} at "
        f"position {position}. Remove whitespace or the non-SMILES text (e.g. a name column).")
  return tokens


def _first_uncovered(smiles: str) -> int:
  position = 0
  for match in SMILES_REGEX.finditer(smiles):
    if match.start() != position:
      return position
    position = match.end()
  return position


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Token <-> id maps. `tokens[i]` is the token of id i; the first five are SPECIAL_TOKENS."""

  tokens: tuple[str, ...]

  def __post_init__(self):
    if tuple(self.tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
      raise ValueError(f"A vocabulary must start with {SPECIAL_TOKENS}, got {self.tokens[:5]}.")
    if len(set(self.tokens)) != len(self.tokens):
      raise ValueError("A vocabulary must not repeat tokens.")
    object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})

  def __len__(self) -> int:
    return len(self.tokens)

  def token_ids(self, tokens: Sequence[str]) -> tuple[list[int], int]:
    """Ids of `tokens`, unseen ones mapped to UNK; returns (ids, number of unknown tokens)."""
    ids = [self._ids.get(token, UNK_ID) for token in tokens]
    return ids, sum(i == UNK_ID for i in ids)

  def encode(self, smiles: str, max_tokens: int) -> np.ndarray:
    """SMILES -> int32 [max_tokens + 2]: BOS, token ids, EOS, PAD...

    Raises TokenizeError for non-SMILES text and ValueError when it has more than `max_tokens`.
    Unseen tokens become UNK.
    """
    tokens = tokenize(smiles)
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
    return json.dumps({"format_version": _FORMAT_VERSION, "tokens": list(self.tokens)}, indent=1)

  @classmethod
  def from_json(cls, text: str) -> "Vocabulary":
    data = json.loads(text)
    if data.get("format_version") != _FORMAT_VERSION or not isinstance(data.get("tokens"), list):
      raise ValueError(
          f"Not a cmim_jax SMILES vocabulary (format_version {_FORMAT_VERSION} with a token list).")
    return cls(tuple(data["tokens"]))

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


def build_vocabulary(tokenized: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
  """The special tokens, then every token seen at least `min_count` times, most frequent first
  (ties in lexical order), so the same corpus always gives the same ids."""
  return vocabulary_from_counts(
      collections.Counter(token for tokens in tokenized for token in tokens), min_count)


def vocabulary_from_counts(counts: Mapping[str, int], min_count: int = 1) -> Vocabulary:
  """`build_vocabulary` from token -> number of occurrences."""
  kept = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIAL_TOKENS),
                key=lambda t: (-counts[t], t))
  return Vocabulary(SPECIAL_TOKENS + tuple(kept))


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
