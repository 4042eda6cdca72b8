"""Experiment 4: when does cMIM's contrastive term act? cMIM against MIM on a validation split.

  python -m experiments.paper.contrastive_sweep --preset=smoke|cpu|defaults|full --out=runs/paper \
      [--data_dir=../shared/data/mnist] [--processes=1] [--baselines_only]

On MNIST, trains MIM and cMIM over a grid of temperature τ x contrastive_weight w x latent size D
(the default pair: anchor mu, positive z), plus the other contrastive pairs of
`cmim_jax.objectives` (anchor projection / z, positive second sample) at a few (τ, w), several
seeds each. The data are the MNIST *training* images only, split once (seed 0) into the runs'
training rows and a validation split; the MNIST test set is never read. Each run is scored on the
validation split: KNN-5 accuracy of the mean encoding (fit on the training rows), the accuracy
of the JAX linear probe (`cmim_jax.probes.linear`: softmax regression on all training rows, weight
decay chosen on a held-out tenth of them), the reconstruction loss, and the contrastive diagnostics
of its last log step (`cmim_jax.diagnostics`). Every cMIM setting is compared with MIM at the same
D, for each score: the difference of mean accuracy over seeds with its Welch 95 % CI and p-value
(`stats.welch_difference`), in both directions. Beside them, the baselines of no training: the
same KNN-5 and linear probe on the same rows' raw pixels and on PCA-D of them for each D
(`common.pixel_baselines`). Writes OUT/contrastive_sweep_<preset>/{report.md, results.json}; the
data split goes to OUT/contrastive_sweep_<preset>/data (IDX files: train = training rows, t10k =
validation).

--baselines_only writes the split (or keeps the one there; it is the same for a preset, seed 0)
and the baselines alone, OUT/contrastive_sweep_<preset>/{baselines.md, baselines.json}, training
nothing: the baselines of a recorded sweep whose runs are gone, e.g.

  python -m experiments.paper.contrastive_sweep --preset=cpu --baselines_only --out=runs/paper \
      --data_dir=../shared/data/mnist
"""

from __future__ import annotations

import collections
import pathlib

import ml_collections
import numpy as np
from absl import flags

from cmim_jax import errors
from cmim_jax.data import idx, mnist
from experiments import cli
from experiments.configs import mnist as mnist_config
from experiments.paper import common, stats

FLAGS = flags.FLAGS
DEFAULT_PAIR = ("mu", "z")
OTHER_PAIRS = (("projection", "z"), ("mu", "second_sample"), ("z", "second_sample"))
SCORE = "knn5_accuracy_mean"
LINEAR_SCORE = "linear_accuracy_mean"
SCORES = {SCORE: "KNN-5", LINEAR_SCORE: "linear probe"}
DIAGNOSTICS = ("contrastive_grad_share", "frac_p_positive_gt_0.99", "positive_cosine",
               "negative_cosine_mean", "negative_cosine_p95", "posterior_std")
PRESETS = {
    # Seconds, on synthetic data: MIM, cMIM and one other pair, a tiny MLP, one seed.
    "smoke": dict(temperatures=(0.5,), weights=(1.0,), latent_dims=(4,), seeds=1,
                  pairs=(("z", "second_sample"),), pair_settings=((0.5, 1.0),), num_steps=12,
                  batch_size=32, hidden_sizes=(16,), num_train=384, num_validation=128),
    # The 2-core CPU: the whole (τ, w, D) grid with 3 seeds, a one-layer 128-unit MLP, 600 steps of
    # 128 on 10,000 training digits (7.7 epochs), 5,000 validation digits; the other pairs at
    # τ = 0.1 (the paper's) with w = 1 and 10.
    "cpu": dict(temperatures=(0.05, 0.1, 0.2, 0.5, 1.0), weights=(1.0, 10.0, 100.0),
                latent_dims=(16, 64), seeds=3, pairs=OTHER_PAIRS,
                pair_settings=((0.1, 1.0), (0.1, 10.0)), num_steps=600, batch_size=128,
                hidden_sizes=(128,), num_train=10_000, num_validation=5_000),
    # The 2-core CPU, about 10 min a seed: whether the cpu preset's choice of defaults holds at the
    # default config itself (MLP 512-512, 10,000 steps of 128, 50,000 / 10,000 digits), for the
    # old defaults (D = 16, τ = 0.1) and the cpu preset's pick (D = 64, τ = 1), crossed; 2 seeds.
    "defaults": dict(temperatures=(0.1, 1.0), weights=(1.0,), latent_dims=(16, 64), seeds=2,
                     pairs=(), pair_settings=(), num_steps=10_000, batch_size=128,
                     hidden_sizes=(512, 512), num_train=50_000, num_validation=10_000),
    # A GPU: the default MLP (512-512), 10,000 steps of 128, 50,000 / 10,000 digits, every pair at
    # every (τ, w).
    "full": dict(temperatures=(0.05, 0.1, 0.2, 0.5, 1.0), weights=(1.0, 10.0, 100.0),
                 latent_dims=(16, 64), seeds=3, pairs=OTHER_PAIRS,
                 pair_settings=tuple((t, w) for t in (0.05, 0.1, 0.2, 0.5, 1.0)
                                     for w in (1.0, 10.0, 100.0)),
                 num_steps=10_000, batch_size=128, hidden_sizes=(512, 512), num_train=50_000,
                 num_validation=10_000),
}


def write_validation_split(data_config: ml_collections.ConfigDict, folder: pathlib.Path,
                           num_train: int, num_validation: int) -> pathlib.Path:
  """Writes MNIST-like IDX files whose "train" and "t10k" halves both come from MNIST *train*.

  The training images are permuted with seed 0; the first `num_train` become the runs' training
  rows (train-*), the next `num_validation` the validation split (t10k-*). Returns `folder`;
  an existing split is kept.
  """
  names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
  if all((folder / name).exists() for name in names):
    return folder
  dataset = mnist.load_image_dataset(data_config)
  images, labels = dataset.train_images, dataset.train_labels
  if num_train + num_validation > len(labels):
    raise errors.ConfigError(f"{num_train} training + {num_validation} validation rows exceed the "
                             f"{len(labels)} MNIST training images.")
  order = np.random.default_rng(0).permutation(len(labels))
  parts = (order[:num_train], order[num_train:num_train + num_validation])
  folder.mkdir(parents=True, exist_ok=True)
  for (image_name, label_name), rows in zip((names[:2], names[2:]), parts):
    idx.write_idx(folder / image_name, images[rows].reshape(len(rows), *images.shape[1:3]))
    idx.write_idx(folder / label_name, labels[rows].astype(np.uint8))
  return folder


def validation_split(mnist_dir: str, folder: pathlib.Path, preset: dict) -> pathlib.Path:
  """`write_validation_split` of the MNIST in `mnist_dir` ('' = the loaders' default) with the
  preset's num_train and num_validation."""
  data_config = mnist_config.get_config().data
  data_config.data_dir = mnist_dir
  return write_validation_split(data_config, folder, preset["num_train"],
                                preset["num_validation"])


def validation_run_config(seed: int, preset: dict,
                          data_dir: pathlib.Path) -> ml_collections.ConfigDict:
  """The MNIST config of a run on the split in `data_dir` (no fallback data), with the preset's
  batch size and MLP widths."""
  config = mnist_config.get_config()
  config.seed = seed
  config.data.data_dir = str(data_dir)
  config.data.allow_fallback = False
  config.data.batch_size = preset["batch_size"]
  config.model.hidden_sizes = preset["hidden_sizes"]
  return config


def run_keys(preset: dict) -> list[tuple]:
  """(method, τ, w, D, anchor, positive, seed) of every run; MIM's τ and w are None.

  Seed-major: every setting's seed 0 runs before any seed 1, so a sweep cut short still covers
  the whole grid.
  """
  keys = []
  for seed in range(preset["seeds"]):
    for dim in preset["latent_dims"]:
      keys.append(("mim", None, None, dim, *DEFAULT_PAIR, seed))
      for tau in preset["temperatures"]:
        for weight in preset["weights"]:
          keys.append(("cmim", tau, weight, dim, *DEFAULT_PAIR, seed))
      for tau, weight in preset["pair_settings"]:
        for pair in preset["pairs"]:
          keys.append(("cmim", tau, weight, dim, *pair, seed))
  return keys


def run_name(key: tuple) -> str:
  method, tau, weight, dim, anchor, positive, seed = key
  if method == "mim":
    return f"mim_d{dim}_seed{seed}"
  return f"cmim_t{tau:g}_w{weight:g}_d{dim}_{anchor}-{positive}_seed{seed}"


def run_config(key: tuple, preset: dict, data_dir: pathlib.Path) -> ml_collections.ConfigDict:
  method, tau, weight, dim, anchor, positive, seed = key
  config = validation_run_config(seed, preset, data_dir)
  config.model.latent_dim = dim
  config.loss.method = method
  if method == "mim":  # MIM does not train the term; its diagnostics describe it at τ = 0.1.
    config.loss.temperature = 0.1
  else:
    config.loss.temperature = tau
    config.loss.contrastive_weight = weight
    config.loss.contrastive_anchor = anchor
    config.loss.contrastive_positive = positive
  config.train.num_steps = preset["num_steps"]
  config.train.log_every_steps = max(1, preset["num_steps"] // 6)
  config.checkpoint.every_steps = preset["num_steps"]
  config.checkpoint.max_to_keep = 1
  return config


def aggregate(summaries: dict[tuple, dict]) -> list[dict]:
  """One row per setting (all but the seed): scores over seeds and the comparison with MIM.

  Args:
    summaries: run key -> the run's summary.json (SCORE, test_reconstruction_loss on the
      validation split, and "diagnostics") with LINEAR_SCORE added.

  Returns:
    Rows {"method", "temperature", "weight", "latent_dim", "anchor", "positive", "seeds",
    "score" and "linear_score": (mean, std), "reconstruction": (mean, std), "<diagnostic>": mean,
    "vs_mim" and "linear_vs_mim": stats.Difference as a dict (absent for MIM)}, MIM first, then
    by D, τ, w.
  """
  by_setting = collections.defaultdict(list)
  for key, summary in summaries.items():
    by_setting[key[:-1]].append(summary)
  rows = []
  for setting, runs in by_setting.items():
    method, tau, weight, dim, anchor, positive = setting
    row = dict(method=method, temperature=tau, weight=weight, latent_dim=dim, anchor=anchor,
               positive=positive, seeds=len(runs),
               reconstruction=stats.mean_std([s["test_reconstruction_loss"] for s in runs]))
    for name in DIAGNOSTICS:
      values = [s.get("diagnostics", {}).get(f"diagnostics/{name}") for s in runs]
      values = [v for v in values if v is not None]
      row[name] = float(np.mean(values)) if values else None
    for score, prefix in ((SCORE, ""), (LINEAR_SCORE, "linear_")):
      scores = [s[score] for s in runs]
      mim_scores = [s[score] for k, s in summaries.items() if k[0] == "mim" and k[3] == dim]
      row[f"{prefix}score"] = stats.mean_std(scores)
      if method != "mim" and mim_scores:
        row[f"{prefix}vs_mim"] = vars(stats.welch_difference(scores, mim_scores))
    rows.append(row)
  rows.sort(key=lambda r: (r["method"] != "mim", r["latent_dim"], r["temperature"] or 0,
                           r["weight"] or 0, (r["anchor"], r["positive"]) != DEFAULT_PAIR,
                           r["anchor"], r["positive"]))
  return rows


def verdict(difference: dict | None) -> str:
  """'better' / 'worse' when the 95 % CI of cMIM - MIM excludes 0, else 'no difference'."""
  if difference is None or not np.isfinite(difference["ci_low"]):
    return "n/a (1 seed)"
  if difference["ci_low"] > 0:
    return "**better**"
  if difference["ci_high"] < 0:
    return "**worse**"
  return "no difference"


def _cell(value, spec=".3f") -> str:
  return "-" if value is None else format(value, spec)


def _score_cells(row: dict, prefix: str) -> str:
  """'acc +- std | Δ [CI] | p | verdict' of one score of `row`."""
  difference = row.get(f"{prefix}vs_mim")
  score = row[f"{prefix}score"]
  if difference is None:
    return f"{score[0]:.4f} +- {score[1]:.4f} | - | - | -"
  return (f"{score[0]:.4f} +- {score[1]:.4f} | {difference['difference']:+.4f} "
          f"[{difference['ci_low']:+.4f}, {difference['ci_high']:+.4f}] | "
          f"{difference['p_value']:.3g} | {verdict(difference)}")


def markdown_table(rows: list[dict]) -> str:
  lines = ["| method | D | τ | w | anchor | positive | seeds | val KNN-5 acc | Δ vs MIM [95 % CI] "
           "| p | verdict | val linear acc | Δ vs MIM [95 % CI] | p | verdict | val recon. (nats) "
           "| grad share | frac p>0.99 | pos. cos | neg. cos mean / p95 | post. std |",
           "|" + " --- |" * 21]
  for r in rows:
    lines.append(
        f"| {r['method']} | {r['latent_dim']} | {_cell(r['temperature'], 'g')} | "
        f"{_cell(r['weight'], 'g')} | {r['anchor']} | {r['positive']} | {r['seeds']} | "
        f"{_score_cells(r, '')} | {_score_cells(r, 'linear_')} | "
        f"{r['reconstruction'][0]:.1f} | {_cell(r['contrastive_grad_share'], '.3g')} | "
        f"{_cell(r['frac_p_positive_gt_0.99'], '.2f')} | {_cell(r['positive_cosine'])} | "
        f"{_cell(r['negative_cosine_mean'])} / {_cell(r['negative_cosine_p95'])} | "
        f"{_cell(r['posterior_std'])} |")
  return "\n".join(lines)


def baselines_table(baselines: dict[str, dict[str, float]]) -> str:
  """One line per baseline of `common.pixel_baselines`: its validation KNN-5 and linear accuracy."""
  lines = ["| baseline (no training) | val KNN-5 acc | val linear acc |", "|" + " --- |" * 3]
  lines += [f"| {name} | {scores['knn5_accuracy']:.4f} | {scores['linear_accuracy']:.4f} |"
            for name, scores in baselines.items()]
  return "\n".join(lines)


def summary_sentences(rows: list[dict]) -> str:
  """For each score, how many cMIM settings differ from MIM beyond seed noise, each way."""
  return " ".join(_summary_sentence(rows, prefix, name)
                  for prefix, name in (("", "KNN-5"), ("linear_", "linear-probe")))


def _summary_sentence(rows: list[dict], prefix: str, score_name: str) -> str:
  key = f"{prefix}vs_mim"
  compared = [r for r in rows if r.get(key) and np.isfinite(r[key]["ci_low"])]
  if not compared:
    return f"{score_name}: no setting has 2+ seeds on both sides, so no CI was computed."
  better = [r for r in compared if r[key]["ci_low"] > 0]
  worse = [r for r in compared if r[key]["ci_high"] < 0]

  def names(selected):
    return ", ".join(f"D={r['latent_dim']} τ={r['temperature']:g} w={r['weight']:g} "
                     f"{r['anchor']}/{r['positive']}" for r in selected) or "none"

  return (f"{score_name} accuracy: of {len(compared)} cMIM settings compared with MIM at the "
          "same D, "
          f"{len(better)} score higher beyond seed noise (95 % CI of the difference above 0: "
          f"{names(better)}) and {len(worse)} lower ({names(worse)}). At 95 % about "
          f"{0.05 * len(compared):.1f} of {len(compared)} would differ by chance alone.")


def rows_sentence(preset: dict) -> str:
  """Which MNIST training digits the preset fits on and scores on."""
  return (f"Fitted on {preset['num_train']:,} MNIST training digits; scored on "
          f"{preset['num_validation']:,} other MNIST training digits (validation; the test set is "
          "not used).")


def write_baselines(out_dir: pathlib.Path, baselines: dict[str, dict[str, float]],
                    experiment: common.Experiment) -> None:
  """out_dir/{baselines.json, baselines.md}: `common.pixel_baselines` of the --preset's split."""
  preset = PRESETS[FLAGS.preset]
  wall_s = experiment.wall_s()
  common.write_outputs(
      out_dir, {**experiment.provenance(wall_s), "num_train": preset["num_train"],
                "num_validation": preset["num_validation"], "baselines": baselines},
      common.report_header(f"Baselines of the contrastive sweep ({FLAGS.preset} preset)",
                           experiment.command, wall_s, note="no runs")
      + f"{rows_sentence(preset)} {common.PIXEL_BASELINES_NOTE}\n\n"
      + baselines_table(baselines) + "\n",
      name="baselines", results_name="baselines")


def main(argv):
  del argv
  experiment = common.Experiment("experiments.paper.contrastive_sweep", FLAGS.preset)
  preset = PRESETS[FLAGS.preset]
  out_dir = pathlib.Path(FLAGS.out) / f"contrastive_sweep_{FLAGS.preset}"
  data_dir = validation_split(FLAGS.data_dir, out_dir / "data", preset)
  baselines = common.pixel_baselines(data_dir, preset["latent_dims"])
  if FLAGS.baselines_only:
    write_baselines(out_dir, baselines, experiment)
    return
  keys = run_keys(preset)
  workdirs = {key: out_dir / "runs" / run_name(key) for key in keys}
  summaries = dict(zip(keys, common.run_all(
      [(run_config(key, preset, data_dir), workdirs[key]) for key in keys], FLAGS.processes,
      num_devices=1)))
  for key in keys:  # The validation split is the runs' "test" split.
    summaries[key] = dict(summaries[key],
                          **{LINEAR_SCORE: common.linear_accuracy_of_mean(workdirs[key])})
  rows = aggregate(summaries)
  wall_s = experiment.wall_s()
  common.write_outputs(out_dir, {
      **experiment.provenance(wall_s), "settings": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in preset.items()},
      "baselines": baselines, "rows": rows,
      "runs": [{"name": run_name(k), **summaries[k]} for k in keys]},
      common.report_header(f"When does the contrastive term act? ({FLAGS.preset} preset)",
                           experiment.command, wall_s) +
      f"Runs: {len(keys)} ({preset['seeds']} seed(s) per setting), {preset['num_steps']} steps "
      f"of {preset['batch_size']}, MLP {tuple(preset['hidden_sizes'])}. {rows_sentence(preset)} "
      "val KNN-5 acc / val linear acc: KNN-5 and JAX linear-probe accuracy of the mean encoding "
      "(mean +- std over seeds); Δ vs MIM: cMIM - MIM at the same D with the Welch 95 % CI; "
      "diagnostics at the last log step (means over seeds).\n\n"
      + summary_sentences(rows) + "\n\n" + common.PIXEL_BASELINES_NOTE + "\n\n"
      + baselines_table(baselines) + "\n\n" + markdown_table(rows) + "\n")


def define_flags() -> None:
  """The shared flags (`common.define_flags`) and this script's own."""
  common.define_flags(PRESETS, processes=True)
  flags.DEFINE_bool("baselines_only", False, "Write the split and the pixel baselines "
                    "(baselines.md, baselines.json) only; train nothing.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
