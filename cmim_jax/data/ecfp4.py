"""The ECFP4 baseline: RDKit Morgan fingerprints (radius 2, 2048 bits) of a labelled set.

`ecfp4_features(data_config)` returns the fingerprints under the key "ecfp4" beside the same
annotations (`targets` or `binary_labels`, `split_random<k>`, `split_scaffold`) that
`MoleculeNetTask` gives its embeddings, for the same molecules in the same order (both read them
with `moleculenet.load_labelled_set`), so the probe tools score the fingerprints like an embedding.
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

import ml_collections
import numpy as np

from cmim_jax.data import moleculenet
from cmim_jax.embedding import files as embedding_files

ECFP4_RADIUS = 2
ECFP4_BITS = 2048


def ecfp4(smiles: Sequence[str], radius: int = ECFP4_RADIUS,
          num_bits: int = ECFP4_BITS) -> np.ndarray:
  """Morgan bit fingerprints float32 [N, num_bits] (0/1) of RDKit-parsable SMILES."""
  from rdkit import Chem  # pylint: disable=g-import-not-at-top
  from rdkit.Chem import rdFingerprintGenerator  # pylint: disable=g-import-not-at-top
  generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=num_bits)
  out = np.zeros((len(smiles), num_bits), np.float32)
  for i, s in enumerate(smiles):
    mol = Chem.MolFromSmiles(s)
    if mol is None:
      raise ValueError(f"RDKit cannot parse {s!r} (row {i}); drop it before fingerprinting.")
    out[i] = generator.GetFingerprintAsNumPy(mol)
  return out


def ecfp4_features(data_config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """{"ecfp4": float32 [N, 2048], the labels or targets, "task_names", "split_*": int8 [N]} of
  the labelled set `data_config.name` (see `moleculenet.load_labelled_set` and
  `moleculenet.annotations`)."""
  dataset = moleculenet.load_labelled_set(data_config)
  return {"ecfp4": ecfp4(dataset.smiles), "data_name": np.str_(data_config.name),
          **moleculenet.annotations(dataset, data_config.get("num_random_splits", 3))}


def write_ecfp4_features(data_config: ml_collections.ConfigDict,
                         path: str | os.PathLike) -> pathlib.Path:
  """Writes `ecfp4_features(data_config)` to the .npz file `path`, atomically and without pickled
  objects; `experiments.probe --embeddings_dir` scores its "ecfp4" features like an embedding."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  embedding_files.save_npz(path, ecfp4_features(data_config))
  return path
