"""Experiment 4: MoleculeNet regression from MIM and cMIM embeddings, against ECFP4.

  python -m experiments.paper.molecules_table --preset=smoke|cpu|full --out=runs/paper \
      --data_dir=../shared/data/moleculenet [--mim_workdir=DIR --cmim_workdir=DIR] \
      [--corpus_path=FILE | --moses_dir=../shared/data/moses]

Embeds ESOL, FreeSolv and Lipophilicity with the pretrained MIM and cMIM SMILES models (their
workdirs from --mim_workdir / --cmim_workdir, or pretrained here at the preset's scale on
--corpus_path or MOSES) and probes the mean and the informative embedding on three random 80/10/10
splits (pooled as "random": mean +- std over the splits) and the scaffold split. The baseline is
ECFP4 (Morgan radius 2, 2,048 bits) with the same probes, random forest among them. Writes
OUT/molecules_table_<preset>/{report.md, results.json}; embeddings and probe results of each
(model, data set) go below it (never into the pretrained workdirs).
"""

from __future__ import annotations

import pathlib
import time

import ml_collections
from absl import flags

from cmim_jax import embedding_files, molecules_baseline
from cmim_jax.probes import evaluate
from experiments import cli
from experiments.configs import molecules as molecules_config
from experiments.paper import common

DATASETS = ("esol", "freesolv", "lipophilicity")
METHODS = ("mim", "cmim")
FLAGS = flags.FLAGS
PRESETS = {
    # Seconds: a tiny model pretrained for a few steps, ridge regression only.
    "smoke": dict(pretrain=dict(num_steps=4, batch_size=16, max_train_molecules=2000,
                                num_test_molecules=16, width=16, num_latents=2, latent_dim=4,
                                layers=1, max_length=40),
                  probes=("ridge",), num_seeds=1),
    # A 2-core CPU: the CPU default pretraining (`molecules.py`, about 25 min per method; pass
    # --mim_workdir/--cmim_workdir to reuse runs), ridge and random forest.
    "cpu": dict(pretrain=None, probes=("ridge", "random_forest"), num_seeds=1),
    # A GPU: `molecules.py:gpu` pretraining, the whole regression suite over three seeds.
    "full": dict(pretrain="gpu", probes=None, num_seeds=3),
}


def pretrain_config(method: str, preset: dict, corpus_path: str, moses_dir: str):
  """The SMILES pretraining config of `method` at the preset's scale."""
  scale = preset["pretrain"]
  config = molecules_config.get_config(scale if isinstance(scale, str) else "")
  config.loss.method = method
  config.data.corpus_path = corpus_path
  config.data.data_dir = moses_dir
  if isinstance(scale, dict):
    config.data.max_length = scale["max_length"]
    config.data.max_train_molecules = scale["max_train_molecules"]
    config.data.num_test_molecules = scale["num_test_molecules"]
    config.data.batch_size = scale["batch_size"]
    config.model.width = scale["width"]
    config.model.num_latents = scale["num_latents"]
    config.model.latent_dim = scale["latent_dim"]
    config.model.encoder_layers = config.model.decoder_layers = scale["layers"]
    config.model.num_heads = 2
    config.train.num_steps = scale["num_steps"]
    config.train.log_every_steps = 1
    config.checkpoint.every_steps = scale["num_steps"]
    config.eval.batch_size = config.eval.num_molecules = scale["num_test_molecules"]
    config.eval.num_prior_samples = scale["num_test_molecules"]
  return config


def ecfp4_and_probe(data_name: str, data_dir: str, out_dir: pathlib.Path,
                    settings: evaluate.ProbeSettings) -> dict:
  """Probes ECFP4 fingerprints of `data_name`, stored as the "mean" features of an embedding file
  (the probes read the keys of `embedding_files.EMBEDDING_KEYS`)."""
  path = embedding_files.embeddings_dir(out_dir) / "all.npz"
  if not path.exists():
    arrays = molecules_baseline.ecfp4_features(ml_collections.ConfigDict(
        dict(name=data_name, data_dir=data_dir, num_random_splits=3)))
    arrays["mean"] = arrays.pop("ecfp4")
    embedding_files.save_npz(path, arrays)
  return common.embed_and_probe(out_dir, out_dir, settings)


def rows(results: dict[str, dict[str, dict]]) -> list[str]:
  """Markdown rows: data set, features, probe, RMSE on the random splits and the scaffold split."""
  lines = []
  for data_name, by_model in results.items():
    for model_name, report in by_model.items():
      for probe, by_embedding in report["results"].items():
        for embedding, metrics in by_embedding.items():
          features = "ECFP4" if model_name == "ecfp4" else f"{model_name} {embedding}"
          random, scaffold = metrics["rmse@random"], metrics["rmse@scaffold"]
          lines.append(f"| {data_name} | {features} | {probe} | {random['mean']:.3f} +- "
                       f"{random['std']:.3f} (n={random['n']}) | {scaffold['mean']:.3f} |")
  return lines


def main(argv):
  del argv
  command = common.command_line("experiments.paper.molecules_table")
  start = time.perf_counter()
  preset = PRESETS[FLAGS.preset]
  out_dir = pathlib.Path(FLAGS.out) / f"molecules_table_{FLAGS.preset}"
  given = {"mim": FLAGS.mim_workdir, "cmim": FLAGS.cmim_workdir}
  workdirs, pretrain_summaries = {}, {}
  for method in METHODS:
    workdirs[method] = pathlib.Path(given[method] or out_dir / "pretrain" / method)
    if not given[method]:
      config = pretrain_config(method, preset, FLAGS.corpus_path, FLAGS.moses_dir)
      pretrain_summaries[method] = common.run_or_load(config, workdirs[method])
  settings = evaluate.ProbeSettings(max_train=None, num_seeds=preset["num_seeds"],
                                    probes=preset["probes"])
  results: dict[str, dict[str, dict]] = {}
  for data_name in DATASETS:
    results[data_name] = {
        method: common.embed_and_probe(workdirs[method], out_dir / data_name / method, settings,
                                       data_name=data_name, data_dir=FLAGS.data_dir)
        for method in METHODS}
    results[data_name]["ecfp4"] = ecfp4_and_probe(data_name, FLAGS.data_dir,
                                                   out_dir / data_name / "ecfp4", settings)
  wall_s = time.perf_counter() - start
  probes = ", ".join(preset["probes"]) if preset["probes"] else "the full regression suite"
  common.write_json(out_dir / "results.json", {
      "preset": FLAGS.preset, "machine": common.machine_description(), "wall_time_s": wall_s,
      "command": command, "pretrained": {m: str(w) for m, w in workdirs.items()},
      "pretrain_summaries": pretrain_summaries,
      "results": {d: {m: r["results"] for m, r in by_model.items()}
                  for d, by_model in results.items()}})
  (out_dir / "report.md").write_text(
      f"# MoleculeNet regression ({FLAGS.preset} preset)\n\n"
      f"Command: `{command}`  \nMachine: {common.machine_description()}; wall time "
      f"{wall_s / 60:.1f} min (embedding and probing; pretraining done before is not counted).  \n"
      f"Pretrained models: " + ", ".join(f"{m} `{w}`" for m, w in workdirs.items()) + ".  \n"
      f"Probes: {probes} ({preset['num_seeds']} seed(s) of the stochastic ones); RMSE in the "
      "targets' units (log mol/L, kcal/mol, logD) on the test rows of three random 80/10/10 "
      "splits (mean +- std over splits and seeds) and of the Bemis-Murcko scaffold split.\n\n"
      "| data set | features | probe | RMSE random splits | RMSE scaffold |\n"
      "| --- | --- | --- | --- | --- |\n" + "\n".join(rows(results)) + "\n")
  print((out_dir / "report.md").read_text())


def define_flags() -> None:
  """The command-line flags (defined only when run as a script, so modules import cleanly)."""
  flags.DEFINE_enum("preset", "smoke", list(PRESETS), "Scale of the experiment.")
  flags.DEFINE_string("out", "runs/paper", "Output folder (runs and report go below it).")
  flags.DEFINE_string("data_dir", "", "Folder with the MoleculeNet CSVs; '' = download.")
  flags.DEFINE_string("mim_workdir", "", "Pretrained MIM run; '' = pretrain here.")
  flags.DEFINE_string("cmim_workdir", "", "Pretrained cMIM run; '' = pretrain here.")
  flags.DEFINE_string("corpus_path", "", "Pretraining corpus; '' = MOSES.")
  flags.DEFINE_string("moses_dir", "", "Folder with MOSES train/test CSVs.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
