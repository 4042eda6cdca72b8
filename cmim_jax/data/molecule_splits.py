"""Train / valid / test splits of molecule sets: int8 [N] with 0 = train, 1 = valid, 2 = test.

Random 80/10/10 splits over several seeds, and the Bemis-Murcko scaffold split of MoleculeNet /
DeepChem (molecules sharing a scaffold share a split, the rarer scaffolds end up in test).
"""

from __future__ import annotations

import collections
from typing import Sequence

import numpy as np
from absl import logging

from cmim_jax.data import molecules
from cmim_jax.errors import ConfigError, DataError

SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST = 0, 1, 2
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


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
  with molecules.quiet_rdkit():
    mol = molecules.rdkit_chem().MolFromSmiles(smiles)
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
  return np.array([first.setdefault(molecules.canonicalize(s) or s, row)
                   for row, s in enumerate(smiles)], np.int64)


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

