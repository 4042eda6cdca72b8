"""Writes ECFP4 fingerprints of a labelled molecule set as an embedding file for the probe tools.

  python -m experiments.ecfp4_baseline --data=esol \
      --data_dir=../shared/data/moleculenet --output=/tmp/esol_ecfp4/all.npz
  python -m experiments.ecfp4_baseline --data=mine.csv --target_columns=active \
      --task_type=binary --output=/tmp/mine_ecfp4/all.npz

The file holds "ecfp4" [N, 2048] with the labels or targets and the "split_*" arrays of the
molecules that `experiments.embed --data=...` embeds, so `experiments.probe --embeddings_dir`
compares it with the learned embeddings.
"""

import ml_collections
from absl import app, flags, logging

from cmim_jax.data import ecfp4
from experiments import cli, molecule_flags

_DATA_DIR = flags.DEFINE_string("data_dir", "", "Folder with the MoleculeNet CSVs; '' = download.")
_DOWNLOAD_SHA256 = flags.DEFINE_string(
    "download_sha256", "", "A digest you trust, to download a set without a pinned one.")
_OUTPUT = flags.DEFINE_string("output", None, "The .npz file to write.")
flags.mark_flags_as_required(["data", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  data_config = ml_collections.ConfigDict(
      {"data_dir": _DATA_DIR.value, "download_sha256": _DOWNLOAD_SHA256.value, "csv_path": "",
       **molecule_flags.data_overrides()})
  path = ecfp4.write_ecfp4_features(data_config, _OUTPUT.value)
  logging.info("Wrote %s.", path)


if __name__ == "__main__":
  cli.run(main)
