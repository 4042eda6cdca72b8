"""Embeds a data set with a trained checkpoint: `python -m experiments.embed --workdir=DIR`.

Writes DIR/embeddings/<split>.npz (see `cmim_jax.embedding.files` for the layout) for the latest
checkpoint, or `--step=N`, and the data set it was trained on, or `--data_name=NAME` (another
registered task whose inputs the model accepts). Same inputs, same bytes.

  python -m experiments.embed --workdir=/tmp/cmim_mnist --split=train,test

A SMILES model embeds any labelled molecule set with `--data` (see `experiments.molecule_flags`):
  python -m experiments.embed --workdir=/tmp/cmim_smiles --data=mine.csv \
      --smiles_column=smiles --target_columns=active --task_type=binary --out_dir=/tmp/mine/embeddings
"""

import pathlib
import time

from absl import app, flags, logging

from cmim_jax import embedding
from experiments import cli, molecule_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding checkpoints/.")
_SPLIT = flags.DEFINE_list("split", None, "Splits to embed; default: every split of the task.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
_DATA_NAME = flags.DEFINE_string("data_name", None,
                                 "Embed this registered task instead of the trained one.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Override config.data.data_dir (where the data files are).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None,
                                   "Examples per jitted call; default: config.eval.batch_size.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder; default: WORKDIR/embeddings.")
flags.mark_flags_as_required(["workdir"])
flags.register_validator("batch_size", lambda value: value is None or value >= 1,
                         "--batch_size must be >= 1 (or left out for config.eval.batch_size).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  start = time.perf_counter()
  logging.info("Restoring the checkpoint in %s and loading its data ...", _WORKDIR.value)
  trained = embedding.load_trained(_WORKDIR.value, step=_STEP.value, data_name=_DATA_NAME.value,
                                   data_dir=_DATA_DIR.value,
                                   data_overrides=molecule_flags.data_overrides())
  logging.info("Restored step %d (method %s, data %s) in %.1f s.", trained.step,
               trained.config.loss.method, trained.config.data.name, time.perf_counter() - start)
  out_dir = pathlib.Path(_OUT_DIR.value or embedding.embeddings_dir(_WORKDIR.value))
  paths = embedding.write_embeddings(trained, out_dir, _SPLIT.value, _BATCH_SIZE.value)
  probe_args = f"--workdir={_WORKDIR.value}" + (f" --embeddings_dir={out_dir}"
                                                 if _OUT_DIR.value else "")
  logging.info("Embedding took %.1f s; wrote %s. Next: %s -m experiments.probe %s",
               time.perf_counter() - start, ", ".join(map(str, paths.values())),
               cli.python_command(), probe_args)


if __name__ == "__main__":
  cli.run(main)
