"""Writes ECFP4 fingerprints of a MoleculeNet set as an embedding file for the probe tools.

  python -m experiments.ecfp4_baseline --dataset=esol \
      --data_dir=../shared/data/moleculenet --output=/tmp/esol_ecfp4.npz

The file holds "ecfp4" [N, 2048] with "targets" and the "split_*" arrays of the molecules that
`data.name=esol` embeds, so `experiments.probe` compares it with the learned embeddings.
"""

import ml_collections
from absl import app, flags, logging

from cmim_jax.data import ecfp4, moleculenet
from experiments import cli

_DATASET = flags.DEFINE_enum("dataset", None, moleculenet.REGRESSION_DATASETS, "Regression set.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Folder with the MoleculeNet CSVs; '' = download.")
_CSV_PATH = flags.DEFINE_string("csv_path", "", "For --dataset=smiles_csv: the CSV file.")
_TARGET = flags.DEFINE_string("target_column", "", "For smiles_csv: the target column.")
_OUTPUT = flags.DEFINE_string("output", None, "The .npz file to write.")
flags.mark_flags_as_required(["dataset", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  data_config = ml_collections.ConfigDict(dict(
      name=_DATASET.value, data_dir=_DATA_DIR.value, csv_path=_CSV_PATH.value,
      target_column=_TARGET.value))
  path = ecfp4.write_ecfp4_features(data_config, _OUTPUT.value)
  logging.info("Wrote %s.", path)


if __name__ == "__main__":
  cli.run(main)
