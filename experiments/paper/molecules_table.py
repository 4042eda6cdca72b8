"""Experiment 4: MoleculeNet regression from pretrained SMILES models, against ECFP4 and controls.

  python -m experiments.paper.molecules_table --preset=smoke|cpu|full --out=runs/paper \
      --data_dir=../shared/data/moleculenet \
      [--workdirs=mim=/work/runs/molecules/mim,cmim=/work/runs/molecules/cmim,...] \
      [--corpus_path=FILE | --moses_dir=../shared/data/moses]

Embeds ESOL, FreeSolv and Lipophilicity with every pretrained model of --workdirs (name=workdir,
any number; none given = MIM and cMIM pretrained here at the preset's scale on --corpus_path or
MOSES) and probes, on three random 80/10/10 splits (pooled as "random": mean +- std over splits and
seeds) and the Bemis-Murcko scaffold split:
  each model's mean and informative embedding;
  its capacity controls: a random GELU expansion of its mean encoding to the informative width, and
    the MLP probe on its mean encoding;
  the ECFP4 baselines, once per data set: the fingerprint itself (Morgan radius 2, 2,048 bits; the
    "raw" control of `probes.controls`) and its PCA to the width of the first model's mean encoding.
Every probe is fitted twice per split (`probes.evaluate`): on train, scored on valid ("val_"
metrics), and on train+valid, scored on test. Table 1 lists every row; table 2 picks, per data set,
split family and feature source, the (features, probe) of lowest mean validation RMSE and reports
its test RMSE: the test rows never take part in the choice. Writes
OUT/molecules_table_<preset>/{report.md, results.json}; embeddings and probe results of each
(data set, model) go to OUT/molecules_table_<preset>/<data set>/<model>/ (never into the pretrained
workdirs), ECFP4's to <data set>/ecfp4/.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from absl import flags

from cmim_jax import checkpointing
from cmim_jax.data import ecfp4
from cmim_jax.embedding import files as embedding_files
from cmim_jax.errors import ConfigError
from cmim_jax.probes import controls, evaluate
from experiments import cli
from experiments.configs import molecules as molecules_config
from experiments.paper import common

DATASETS = ("esol", "freesolv", "lipophilicity")
METHODS = ("mim", "cmim")  # Pretrained here when no --workdirs are given.
FAMILIES = ("random", "scaffold")
ECFP4 = "ecfp4"  # The run name of the ECFP4 baselines in results.
ECFP4_SOURCE = "ECFP4 baselines"
RECONSTRUCTION_KEYS = ("reconstruction_token_accuracy", "reconstruction_exact_match",
                       "reconstruction_validity")
MODEL_EMBEDDINGS = ("mean", "informative", controls.RANDOM_EXPANSION)
FLAGS = flags.FLAGS
PRESETS = {
    # Seconds: a tiny model pretrained for a few steps, ridge regression (and the MLP on mean).
    "smoke": dict(pretrain=dict(num_steps=4, batch_size=16, max_train_molecules=2000,
                                num_test_molecules=16, width=16, num_latents=2, latent_dim=4,
                                layers=1, max_length=40),
                  probes=("ridge",), mlp_on_mean=True, num_seeds=1),
    # A 2-core CPU: the CPU default pretraining (`molecules.py`, about 10 min per method; pass
    # --workdirs to reuse runs), ridge and a random forest trying a third of the features per
    # split on both cores (`random_forest_third`: the all-features forest on 2,048-bit ECFP4 is
    # 3x slower and would dominate the table), and the MLP on each mean encoding.
    "cpu": dict(pretrain=None, probes=("ridge", "random_forest_third"), mlp_on_mean=True,
                num_seeds=1),
    # A GPU: `molecules.py:gpu` pretraining, the whole regression suite (the MLP among it) over
    # three seeds.
    "full": dict(pretrain="gpu", probes=None, mlp_on_mean=False, num_seeds=3),
}


def parse_workdirs(values: Sequence[str]) -> dict[str, pathlib.Path]:
  """["mim=/runs/mim", "cmim=/runs/cmim"] -> {"mim": Path, "cmim": Path}, in the order given."""
  workdirs = {}
  for value in values:
    name, sep, path = value.partition("=")
    if not sep or not name or not path or name in workdirs or name == ECFP4:
      raise ConfigError(f"--workdirs entry {value!r}: give distinct name=workdir pairs, e.g. "
                        "--workdirs=mim=/work/runs/molecules/mim,cmim=/work/runs/molecules/cmim "
                        f"(the name {ECFP4!r} is taken by the baselines).")
    workdirs[name] = pathlib.Path(path)
  return workdirs


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


def model_info(workdir: pathlib.Path) -> dict[str, Any]:
  """The pretrained model of `workdir`: its loss method and temperature (from the config saved with
  its latest checkpoint), latent size, and held-out reconstruction metrics (from summary.json;
  None when the run has none)."""
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    config = checkpointer.restore_config()
  finally:
    checkpointer.close()
  summary_path = workdir / "summary.json"
  summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
  return {"workdir": str(workdir), "method": config.loss.method,
          "temperature": config.loss.temperature,
          "latent": f"{config.model.num_latents} x {config.model.latent_dim}",
          "step": summary.get("step"), **{key: summary.get(key) for key in RECONSTRUCTION_KEYS}}


def probe_model(workdir: pathlib.Path, out_dir: pathlib.Path, data_name: str,
                settings: evaluate.ProbeSettings, mlp_on_mean: bool) -> dict[str, dict]:
  """Embeds `data_name` with the model in `workdir` into out_dir and probes its embeddings and
  random expansion (and the MLP on its mean when `mlp_on_mean`): {probe: {embedding: metrics}}."""
  results = common.embed_and_probe(workdir, out_dir, settings, data_name=data_name,
                                   data_dir=FLAGS.data_dir)["results"]
  if mlp_on_mean:
    mlp = dataclasses.replace(settings, probes=("mlp",), embeddings=("mean",))
    results = {**results, **common.probe(out_dir / "embeddings", out_dir / "probe_mlp",
                                         mlp)["results"]}
  return results


def probe_ecfp4(data_name: str, out_dir: pathlib.Path, settings: evaluate.ProbeSettings,
                pca_dim: int) -> dict[str, dict]:
  """Writes the ECFP4 fingerprints of `data_name` as the "raw" features of out_dir/embeddings/
  all.npz (once) and probes them and their PCA to `pca_dim`: {probe: {embedding: metrics}}."""
  path = embedding_files.embeddings_dir(out_dir) / "all.npz"
  if not path.exists():
    arrays = ecfp4.ecfp4_features(ml_collections.ConfigDict(
        dict(name=data_name, data_dir=FLAGS.data_dir, num_random_splits=3)))
    arrays[controls.RAW] = arrays.pop("ecfp4")
    embedding_files.save_npz(path, arrays)
  baselines = dataclasses.replace(settings, embeddings=(controls.RAW, controls.PCA),
                                  pca_dim=pca_dim)
  return common.probe(path.parent, out_dir / "probe", baselines)["results"]


def mean_width(embeddings_dir: pathlib.Path) -> int:
  with np.load(embeddings_dir / "all.npz", allow_pickle=False) as arrays:
    return int(arrays["mean"].shape[1])


def table_rows(results: Mapping[str, Mapping[str, Mapping]],
               pca_dims: Mapping[str, int]) -> list[dict]:
  """One row per (data set, run, probe, embedding) of results {data: {run: {probe: {embedding:
  metrics}}}}: {"data_set", "run", "probe", "embedding", "features", "source", "metrics"}, where
  source groups the rows table 2 chooses among: the run's model (mean, informative), "<model>
  capacity controls" (its random expansion, the MLP on its mean) or "ECFP4 baselines";
  pca_dims: data set -> the width of its PCA of ECFP4."""
  rows = []
  for data_name, by_run in results.items():
    for run, by_probe in by_run.items():
      for probe, by_embedding in by_probe.items():
        for embedding, metrics in by_embedding.items():
          features, source = _features_and_source(run, probe, embedding,
                                                  pca_dims[data_name])
          rows.append({"data_set": data_name, "run": run, "probe": probe, "embedding": embedding,
                       "features": features, "source": source, "metrics": metrics})
  return rows


def _features_and_source(run: str, probe: str, embedding: str, pca_dim: int) -> tuple[str, str]:
  if run == ECFP4:
    return ("ECFP4" if embedding == controls.RAW else f"PCA of ECFP4 ({pca_dim})"), ECFP4_SOURCE
  if embedding == controls.RANDOM_EXPANSION:
    return f"random expansion of {run} mean", f"{run} capacity controls"
  if embedding == "mean" and probe == "mlp":
    return f"{run} mean", f"{run} capacity controls"
  return f"{run} {embedding}", run


def select_on_validation(rows: Sequence[Mapping], family: str) -> dict[str, dict[str, dict]]:
  """{data set: {source: the row of lowest mean val_rmse@family}} among `rows` (`table_rows`);
  the test metrics play no part. Rows without that validation metric are left out."""
  key = f"val_rmse@{family}"
  selected: dict[str, dict[str, dict]] = {}
  for row in rows:
    if key not in row["metrics"]:
      continue
    best = selected.setdefault(row["data_set"], {}).get(row["source"])
    if best is None or row["metrics"][key]["mean"] < best["metrics"][key]["mean"]:
      selected[row["data_set"]][row["source"]] = row
  return selected


def _mean_std(metrics: Mapping, key: str, with_n: bool = False) -> str:
  if key not in metrics:
    return "-"
  value = metrics[key]
  n = f" (n={value['n']})" if with_n else ""
  return f"{value['mean']:.3f} +- {value['std']:.3f}{n}"


def all_rows_markdown(rows: Sequence[Mapping]) -> list[str]:
  """Table 1: every row with its validation and test RMSE on both split families."""
  lines = ["| data set | features | probe | val RMSE random | test RMSE random | val RMSE scaffold "
           "| test RMSE scaffold |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for row in rows:
    m = row["metrics"]
    lines.append(f"| {row['data_set']} | {row['features']} | {row['probe']} | "
                 f"{_mean_std(m, 'val_rmse@random')} | {_mean_std(m, 'rmse@random', True)} | "
                 f"{_mean_std(m, 'val_rmse@scaffold')} | {_mean_std(m, 'rmse@scaffold')} |")
  return lines


def selected_markdown(selected: Mapping[str, Mapping[str, Mapping]], family: str) -> list[str]:
  """Table 2 for one split family: per data set and source, the entry chosen on validation."""
  lines = [f"| data set | source | selected features | probe | val RMSE {family} | "
           f"test RMSE {family} |", "| --- | --- | --- | --- | --- | --- |"]
  for data_name, by_source in selected.items():
    for source, row in by_source.items():
      m = row["metrics"]
      lines.append(f"| {data_name} | {source} | {row['features']} | {row['probe']} | "
                   f"{_mean_std(m, f'val_rmse@{family}')} | "
                   f"{_mean_std(m, f'rmse@{family}', True)} |")
  return lines


def models_markdown(models: Mapping[str, Mapping]) -> list[str]:
  lines = ["| model | method | temperature | latent K x D | step | held-out token accuracy | "
           "exact match | validity | workdir |", "| --- | --- | --- | --- | --- | --- | --- | --- "
           "| --- |"]
  for name, info in models.items():
    cells = [f"{info[k]:.3f}" if isinstance(info[k], float) else "-"
             for k in RECONSTRUCTION_KEYS]
    lines.append(f"| {name} | {info['method']} | {info['temperature']} | {info['latent']} | "
                 f"{info['step']} | {' | '.join(cells)} | `{info['workdir']}` |")
  return lines


def pretrained_workdirs(preset: dict, out_dir: pathlib.Path
                        ) -> tuple[dict[str, pathlib.Path], dict[str, dict]]:
  """The models of --workdirs, or MIM and cMIM pretrained under out_dir/pretrain: (workdirs,
  summaries of the runs pretrained here)."""
  workdirs = parse_workdirs(FLAGS.workdirs)
  if workdirs:
    return workdirs, {}
  summaries = {}
  for method in METHODS:
    workdirs[method] = out_dir / "pretrain" / method
    config = pretrain_config(method, preset, FLAGS.corpus_path, FLAGS.moses_dir)
    summaries[method] = common.run_or_load(config, workdirs[method])
  return workdirs, summaries


def main(argv):
  del argv
  experiment = common.Experiment("experiments.paper.molecules_table", FLAGS.preset)
  preset = PRESETS[FLAGS.preset]
  out_dir = pathlib.Path(FLAGS.out) / f"molecules_table_{FLAGS.preset}"
  workdirs, pretrain_summaries = pretrained_workdirs(preset, out_dir)
  models = {name: model_info(workdir) for name, workdir in workdirs.items()}
  settings = evaluate.ProbeSettings(max_train=None, num_seeds=preset["num_seeds"],
                                    probes=preset["probes"], embeddings=MODEL_EMBEDDINGS)
  results: dict[str, dict[str, dict]] = {}
  pca_dims: dict[str, int] = {}
  for data_name in DATASETS:
    results[data_name] = {
        name: probe_model(workdir, out_dir / data_name / name, data_name, settings,
                          preset["mlp_on_mean"])
        for name, workdir in workdirs.items()}
    pca_dims[data_name] = mean_width(out_dir / data_name / next(iter(workdirs)) / "embeddings")
    results[data_name][ECFP4] = probe_ecfp4(data_name, out_dir / data_name / ECFP4, settings,
                                            pca_dims[data_name])
  rows = table_rows(results, pca_dims)
  selected = {family: select_on_validation(rows, family) for family in FAMILIES}
  wall_s = experiment.wall_s()
  common.write_outputs(out_dir, {
      **experiment.provenance(wall_s), "models": models,
      "pretrain_summaries": pretrain_summaries, "pca_dims": pca_dims, "results": results,
      "rows": rows, "selected_on_validation": selected},
      report(experiment.command, wall_s, preset, models, rows, selected))


def report(command: str, wall_s: float, preset: dict, models: Mapping, rows: Sequence[Mapping],
           selected: Mapping) -> str:
  """The markdown report: the pretrained models, the rows selected on validation, every row."""
  probes = ", ".join(preset["probes"]) if preset["probes"] else "the full regression suite"
  mlp = " and the MLP on each mean encoding" if preset["mlp_on_mean"] else ""
  sections = [
      common.report_header(f"MoleculeNet regression ({FLAGS.preset} preset)", command, wall_s,
                           note="embedding and probing; pretraining done before is not counted") +
      f"Probes: {probes}{mlp} ({preset['num_seeds']} seed(s) of the stochastic ones). RMSE in the "
      "targets' units (log mol/L, kcal/mol, logD). Each split is fitted twice: on its train rows, "
      "scored on its valid rows (val), and on train+valid, scored on its test rows (test); mean "
      "+- std over the three random 80/10/10 splits (and seeds), and the Bemis-Murcko scaffold "
      "split. Controls' statistics (PCA axes, standardisation) come from each fit's training rows "
      "only.", "", "## Pretrained models", "", *models_markdown(models), "",
      "## Table 2: selected on validation", "",
      "For each data set, split family and feature source, the (features, probe) with the lowest "
      "mean validation RMSE; its test RMSE is reported once. The selection used the validation "
      "rows only, never the test rows.", ""]
  for family in FAMILIES:
    sections += [f"### {family} split{'s' if family == 'random' else ''}", "",
                 *selected_markdown(selected[family], family), ""]
  sections += ["## Table 1: every row", "", *all_rows_markdown(rows), ""]
  return "\n".join(sections)


def define_flags() -> None:
  """The shared flags (`common.define_flags`) and this script's own."""
  common.define_flags(PRESETS, data_dir_help="Folder with the MoleculeNet CSVs; '' = download.")
  flags.DEFINE_list("workdirs", [], "Pretrained models as name=workdir pairs, e.g. "
                    "mim=/work/runs/molecules/mim,cmim=/work/runs/molecules/cmim; none = "
                    "pretrain MIM and cMIM here.")
  flags.DEFINE_string("corpus_path", "", "Pretraining corpus; '' = MOSES.")
  flags.DEFINE_string("moses_dir", "", "Folder with MOSES train/test CSVs.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
