"""Compares probed runs: `python -m experiments.compare DIR1 DIR2 ... --out=OUT`.

Each DIR is a run directory after `experiments.embed` and `experiments.probe`. Writes to OUT:
compare.md (mean z-score and mean rank per run and per run x embedding, every probe's values with
z-scores and ranks, geometry of the mean encodings), compare.json, comparison.png (bar charts) and
geometry_<run>.png (histograms of latent norms and of pairwise angles). Runs whose recorded data
differ (source, rows or checksum per split) are refused unless --allow_different_data, which
marks the comparison instead.
"""

from absl import app, flags, logging

from cmim_jax.probes import workflows
from experiments import cli

_OUT = flags.DEFINE_string("out", None, "Output folder.")
_NAMES = flags.DEFINE_list("names", None, "A name per run; default: the directories' names.")
_MAX_POINTS = flags.DEFINE_integer(
    "max_points", 2000, "Mean encodings (a fixed random subset) used for pairwise statistics.")
_ALLOW_DIFFERENT_DATA = flags.DEFINE_bool(
    "allow_different_data", False, "Compare runs whose data differ (another source, row count "
    "or checksum) with a warning and a mark in compare.md, instead of refusing.")
flags.mark_flags_as_required(["out"])


def main(argv):
  run_dirs = argv[1:]
  if len(run_dirs) < 2:
    raise app.UsageError("Pass two or more run directories: "
                         "python -m experiments.compare DIR1 DIR2 ... --out=OUT")
  content = workflows.compare_runs(run_dirs, _OUT.value, _NAMES.value, _MAX_POINTS.value,
                                   _ALLOW_DIFFERENT_DATA.value)
  for run, summary in content["per_run"].items():
    logging.info("%s: mean z %+.3f, mean rank %.2f", run, summary["mean_z"],
                 summary["mean_rank"])
  logging.info("Wrote the comparison to %s", _OUT.value)


if __name__ == "__main__":
  cli.run(main)
