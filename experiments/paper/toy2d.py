"""Experiment 1: geometry of a 2-D latent space for MIM, cMIM and the VAE.

  python -m experiments.paper.toy2d --preset=smoke|cpu|full --out=runs/paper \
      [--figures=docs/figures]

Trains each method on the same 1,000 random 2-D points (`experiments/configs/toy2d.py`), then plots
the mean encodings, the histogram of their angles and of their radii, and tests the angles for
uniformity (Rayleigh and Kolmogorov-Smirnov) per method and seed. Writes OUT/toy2d/report.md,
results.json and PNGs.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import flags

from cmim_jax import embedding
from cmim_jax.probes import report as report_lib
from experiments import cli
from experiments.configs import toy2d as toy2d_config
from experiments.paper import common

METHODS = ("mim", "cmim", "vae")
FLAGS = flags.FLAGS
PRESETS = {
    "smoke": dict(num_steps=60, seeds=1),
    "cpu": dict(num_steps=3000, seeds=3),
    "full": dict(num_steps=20000, seeds=5),
}


def run_config(method: str, seed: int, num_steps: int):
  config = toy2d_config.get_config()
  config.loss.method = method
  config.seed = seed
  config.train.num_steps = num_steps
  config.train.log_every_steps = min(100, num_steps)
  config.checkpoint.every_steps = num_steps
  return config


def plot(latents: dict[str, np.ndarray], out_dir: pathlib.Path) -> list[pathlib.Path]:
  """Latent points, angle histograms and radius histograms, one column per method."""
  paths = []
  for kind in ("points", "angles", "radii"):
    figure = report_lib.new_figure(figsize=(4 * len(latents), 3.6))
    axes = figure.subplots(1, len(latents), squeeze=False)[0]
    for axis, (method, z) in zip(axes, latents.items()):
      if kind == "points":
        axis.scatter(z[:, 0], z[:, 1], s=3, alpha=0.6)
        axis.set_aspect("equal")
      elif kind == "angles":
        axis.hist(np.degrees(np.arctan2(z[:, 1], z[:, 0])), bins=36, range=(-180, 180))
        axis.set_xlabel("angle (degrees)")
      else:
        axis.hist(np.linalg.norm(z, axis=1), bins=40)
        axis.set_xlabel("radius |mu(x)|")
      axis.set_title(method)
    figure.tight_layout()
    paths.append(report_lib.save_figure(figure, out_dir / f"toy2d_{kind}.png", dpi=110))
  return paths


def report(results: dict, preset: str, wall_s: float, command: str) -> str:
  header = ("| method | seeds | Rayleigh R | Rayleigh p | KS D | KS p | radius mean | radius std |"
            " radius CV | recon. NLL |\n|" + " --- |" * 10 + "\n")
  rows = []
  for method, per_seed in results.items():
    mean = {k: np.mean([s[k] for s in per_seed]) for k in per_seed[0] if k != "seed"}
    rows.append(
        f"| {method} | {len(per_seed)} | {mean['angle_mean_resultant_length']:.3f} | "
        f"{mean['angle_rayleigh_p']:.3g} | {mean['angle_ks_statistic']:.3f} | "
        f"{mean['angle_ks_p']:.3g} | {mean['radius_mean']:.3f} | {mean['radius_std']:.3f} | "
        f"{mean['radius_coefficient_of_variation']:.3f} | {mean['reconstruction_loss']:.3f} |")
  return (common.report_header(f"2-D toy: latent geometry ({preset} preset)", command, wall_s)
          + "Values are means over seeds; p-values test uniformity of the mean encodings' angles "
          "(small p = not uniform).\n\n" + header + "\n".join(rows)
          + "\n\n"
          "![points](toy2d_points.png)\n![angles](toy2d_angles.png)\n![radii](toy2d_radii.png)\n")


def main(argv):
  del argv
  experiment = common.Experiment("experiments.paper.toy2d", FLAGS.preset)
  preset = PRESETS[FLAGS.preset]
  out_dir = pathlib.Path(FLAGS.out) / f"toy2d_{FLAGS.preset}"
  results, latents = {}, {}
  for method in METHODS:
    results[method] = []
    for seed in range(preset["seeds"]):
      workdir = out_dir / "runs" / f"{method}_seed{seed}"
      summary = common.run_or_load(run_config(method, seed, preset["num_steps"]), workdir)
      results[method].append({"seed": seed, **{k: summary[k] for k in (
          "reconstruction_loss", "angle_mean_resultant_length", "angle_rayleigh_p",
          "angle_ks_statistic", "angle_ks_p", "radius_mean", "radius_std",
          "radius_coefficient_of_variation", "wall_time_s") if k in summary}})
      if seed == 0:
        trained = embedding.load_trained(workdir)
        latents[method] = embedding.embed_arrays(trained, trained.task.points)["mean"]
  figures = plot(latents, out_dir)
  wall_s = experiment.wall_s()
  common.write_outputs(out_dir, {**experiment.provenance(wall_s), "results": results},
                       report(results, FLAGS.preset, wall_s, experiment.command),
                       figures=figures, figures_dir=FLAGS.figures)


if __name__ == "__main__":
  common.define_flags(PRESETS, data_dir_help=None, figures=True)
  cli.run(main)
