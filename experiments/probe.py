"""Probes a run's embeddings: `python -m experiments.probe --workdir=DIR`.

Reads DIR/embeddings/<split>.npz (written by `experiments.embed`), fits every default probe (or
--probes) on the train split and scores it on the test split (or, for data sets without a fixed
split, on each split scheme), on every embedding and control (or --embeddings), and writes
DIR/probe/results.json and DIR/probe/results.md. The JAX `linear` probe fits on all training rows;
the scikit-learn ones on a fixed subsample of at most --max_train rows (10,000 by default: the
random forest and MLP probes are slow on all 60,000 MNIST rows on a CPU); results.md says how many
rows each used. Each (probe, embedding) is logged and saved to DIR/probe/partial/ when done, so a
stopped run, started again, fits only what is missing.

  python -m experiments.probe --workdir=/tmp/cmim_mnist --probes=linear
"""

import pathlib

from absl import app, flags, logging

from cmim_jax.embedding import files as embedding_files
from cmim_jax.probes import evaluate, workflows
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory holding embeddings/.")
_EMBEDDINGS_DIR = flags.DEFINE_string("embeddings_dir", None,
                                      "Embedding files; default: WORKDIR/embeddings.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder; default: WORKDIR/probe.")
_MAX_TRAIN = flags.DEFINE_integer(
    "max_train", 10000, "Fit the scikit-learn probes on a fixed (stratified, seed 0) subsample "
    "of at most this many training rows; 0 = all. `linear` always fits on all.")
_NUM_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Seeds of the stochastic probes.")
_CV_FOLDS = flags.DEFINE_integer("cv_folds", 3, "Folds of the hyper-parameter CV on train.")
_PROBES = flags.DEFINE_list(
    "probes", None, "Probes to run; default: those of the task's kind marked default (linear "
    "instead of logistic_regression / linear_svm / ridge, which stay selectable).")
_EMBEDDINGS = flags.DEFINE_list(
    "embeddings", None, "Embeddings and controls to probe (mean, informative, raw, pca, "
    "random_expansion); default: all present.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _NUM_SEEDS.value < 1 or _CV_FOLDS.value < 2 or _MAX_TRAIN.value < 0:
    raise app.UsageError("Need --num_seeds >= 1, --cv_folds >= 2 and --max_train >= 0.")
  settings = evaluate.ProbeSettings(
      max_train=_MAX_TRAIN.value or None, num_seeds=_NUM_SEEDS.value, cv_folds=_CV_FOLDS.value,
      probes=_PROBES.value, embeddings=_EMBEDDINGS.value)
  embeddings_dir = (_EMBEDDINGS_DIR.value or embedding_files.embeddings_dir(_WORKDIR.value))
  out_dir = pathlib.Path(_OUT_DIR.value or workflows.probe_dir(_WORKDIR.value))
  result = workflows.probe_run(embeddings_dir, out_dir, settings)
  logging.info("Probes took %.1f s; wrote %s and %s.", result["wall_seconds"],
               out_dir / workflows.RESULTS_JSON, out_dir / workflows.RESULTS_MD)


if __name__ == "__main__":
  cli.run(main)
