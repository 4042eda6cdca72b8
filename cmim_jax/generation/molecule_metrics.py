"""Generation metrics of a set of SMILES (as in MOSES, Polykovskiy et al., arXiv:1811.12823).

  validity           fraction of strings RDKit parses (an empty string is invalid)
  uniqueness         distinct canonical molecules / valid molecules
  novelty            unique valid molecules absent from the training corpus / unique valid ones
  internal diversity 1 - mean Tanimoto similarity of ECFP4 fingerprints (Morgan radius 2, 2,048
                     bits) over the pairs of distinct unique valid molecules (IntDiv_1)
All functions take plain Python lists of SMILES and need RDKit (`pip install cmim-jax[chem]`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from cmim_jax.data import molecules

ECFP4_RADIUS, ECFP4_BITS = 2, 2048


def canonical_or_none(smiles: Sequence[str]) -> list[str | None]:
  """RDKit canonical SMILES of each string, None where it does not parse."""
  return [molecules.canonicalize(s) if s else None for s in smiles]


def ecfp4(smiles: str):
  """The ECFP4 bit vector (RDKit ExplicitBitVect) of a valid SMILES, or None."""
  from rdkit import Chem  # pylint: disable=g-import-not-at-top
  from rdkit.Chem import rdFingerprintGenerator  # pylint: disable=g-import-not-at-top
  mol = Chem.MolFromSmiles(smiles) if smiles else None
  if mol is None:
    return None
  generator = rdFingerprintGenerator.GetMorganGenerator(radius=ECFP4_RADIUS, fpSize=ECFP4_BITS)
  return generator.GetFingerprint(mol)


def tanimoto(a: str, b: str) -> float:
  """Tanimoto similarity of the ECFP4 fingerprints of two SMILES (0 if either is invalid)."""
  from rdkit import DataStructs  # pylint: disable=g-import-not-at-top
  fa, fb = ecfp4(a), ecfp4(b)
  if fa is None or fb is None:
    return 0.0
  return float(DataStructs.TanimotoSimilarity(fa, fb))


def internal_diversity(smiles: Sequence[str], max_molecules: int = 2000, seed: int = 0) -> float:
  """1 - mean pairwise ECFP4 Tanimoto similarity of the distinct valid molecules (at most
  `max_molecules` of them, a random subset), NaN for fewer than 2."""
  from rdkit import DataStructs  # pylint: disable=g-import-not-at-top
  unique = sorted({c for c in canonical_or_none(smiles) if c is not None})
  if len(unique) > max_molecules:
    rng = np.random.default_rng(seed)
    unique = [unique[i] for i in rng.choice(len(unique), max_molecules, replace=False)]
  if len(unique) < 2:
    return float("nan")
  fingerprints = [ecfp4(s) for s in unique]
  total, pairs = 0.0, 0
  for i in range(1, len(fingerprints)):
    similarities = DataStructs.BulkTanimotoSimilarity(fingerprints[i], fingerprints[:i])
    total += float(np.sum(similarities))
    pairs += i
  return 1.0 - total / pairs


def canonical_set(corpus: Iterable[str]) -> set[str]:
  """The canonical SMILES of the valid molecules of `corpus` (canonicalise a corpus once)."""
  return {c for c in canonical_or_none(list(corpus)) if c is not None}


def generation_metrics(smiles: Sequence[str], training_corpus: Iterable[str] | None = None,
                       diversity_molecules: int = 2000) -> dict[str, float]:
  """Validity, uniqueness, novelty (with `training_corpus`: SMILES, or a `canonical_set` of them)
  and internal diversity of `smiles`. Rates over an empty denominator are 0 (diversity NaN)."""
  canonical = canonical_or_none(smiles)
  valid = [c for c in canonical if c is not None]
  unique = set(valid)
  metrics = {
      "num_samples": len(smiles),
      "validity": len(valid) / max(len(smiles), 1),
      "uniqueness": len(unique) / len(valid) if valid else 0.0,
      "internal_diversity": internal_diversity(sorted(unique), diversity_molecules),
  }
  if training_corpus is not None:
    known = (training_corpus if isinstance(training_corpus, set)
             else canonical_set(training_corpus))
    metrics["novelty"] = len(unique - known) / len(unique) if unique else 0.0
  return metrics
