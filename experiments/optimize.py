"""Constrained property optimisation in the latent space of trained SMILES models (MolMIM style).

  python -m experiments.optimize --workdirs=RUN_CMIM,RUN_MIM,RUN_VAE --preset=cpu \
      --data_dir=../shared/data/moses --out=/tmp/optimize

For each run and each benchmark (QED >= 0.9 at similarity >= 0.4 from molecules with QED in
[0.7, 0.8); penalised logP improvement at similarity >= 0.4 and 0.6 from the molecules of lowest
penalised logP), CMA-ES (evosax) and random search, at the same oracle budget per molecule, start
from each molecule's encoding. Start molecules come from the MOSES test split (the original
benchmarks use ZINC250k; `--start_smiles_file` takes another file). Writes OUT/optimize.json and
OUT/optimize.md (success rate and mean improvement with 95 % bootstrap intervals).

Presets (molecules per benchmark, population x generations = oracle calls per molecule):
  smoke: 2 molecules, 4 x 2 (the tests);  cpu: 100 molecules, 20 x 10.
"""

import json
import pathlib
import time

import ml_collections
import numpy as np
from absl import flags, logging

from cmim_jax import embedding
from cmim_jax.data import molecule_files, molecules
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.errors import ConfigError
from cmim_jax.generation import latent_optimization as lo
from experiments import cli

PRESETS = {
    "smoke": dict(num_molecules=2, population=4, generations=2, pool=200, qed_window=(0.0, 1.0),
                  sigma=1.0),
    "cpu": dict(num_molecules=100, population=20, generations=10, pool=5000,
                qed_window=(0.7, 0.8), sigma=1.0),
}
TASKS = (lo.Task("qed", 0.4, success_value=0.9), lo.Task("plogp", 0.4), lo.Task("plogp", 0.6))
OPTIMIZERS = ("cma_es", "random")

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Trained SMILES runs (comma-separated).")
_PRESET = flags.DEFINE_enum("preset", "cpu", list(PRESETS), "Budget preset.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with MOSES test.csv.gz (else the "
                                "runs' data.data_dir / the cache).")
_START_FILE = flags.DEFINE_string("start_smiles_file", None,
                                  "Start molecules from this .csv/.smi (column SMILES) instead.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the start-set draw and the optimisers.")
_NUM_MOLECULES = flags.DEFINE_integer("num_molecules", 0,
                                      "Start molecules per benchmark; 0 = the preset's.")
_BENCHMARKS = flags.DEFINE_list("benchmarks", None, "Benchmarks to run (default all): "
                                + ", ".join(t.name for t in TASKS))
flags.mark_flags_as_required(["workdirs", "out"])


def start_molecules(pool: list[str], trained, preset: dict, task: lo.Task,
                    seed: int) -> list[str]:
  """The benchmark's start molecules from a seeded random `preset["pool"]` of `pool`: those the
  model can tokenise; QED: the first with QED in the window; plogP: the lowest."""
  rng = np.random.default_rng(seed)
  vocab, max_tokens = trained.task.vocab, trained.task.max_tokens
  usable = []
  for s in molecules.subsample(pool, preset["pool"], rng):
    try:
      tokens = smiles_lib.tokenize(s)
    except smiles_lib.TokenizeError:
      continue
    if len(tokens) <= max_tokens and vocab.token_ids(tokens)[1] == 0:
      usable.append(s)
  if task.prop == "qed":
    low, high = preset["qed_window"]
    chosen = [s for s in usable if low <= (lo.qed(s) or -1.0) < high][:preset["num_molecules"]]
  else:
    values = [lo.penalized_logp(s) for s in usable]
    order = np.argsort([np.inf if v is None else v for v in values])
    chosen = [usable[i] for i in order[:preset["num_molecules"]]]
  if not chosen:
    raise ConfigError(f"No start molecules for {task.name} in a pool of {preset['pool']}; use a "
                      "larger pool or another --start_smiles_file.")
  return chosen


def markdown(rows: list[dict]) -> str:
  lines = ["| run | method | benchmark | optimizer | molecules | success rate [95% CI] | "
           "mean improvement [95% CI] |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    s = m = r["summary"]
    lines.append(
        f"| {r['workdir']} | {r['method']} | {r['benchmark']} | {r['optimizer']} | "
        f"{s['num_molecules']} | {s['success_rate']:.3f} [{s['success_rate_ci95'][0]:.3f}, "
        f"{s['success_rate_ci95'][1]:.3f}] | {m['mean_improvement']:.3f} "
        f"[{m['mean_improvement_ci95'][0]:.3f}, {m['mean_improvement_ci95'][1]:.3f}] |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  preset = dict(PRESETS[_PRESET.value])
  if _NUM_MOLECULES.value:
    preset["num_molecules"] = _NUM_MOLECULES.value
  tasks = [t for t in TASKS if _BENCHMARKS.value is None or t.name in _BENCHMARKS.value]
  if not tasks:
    raise ConfigError(f"--benchmarks={_BENCHMARKS.value} names none of "
                      f"{[t.name for t in TASKS]}.")
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  rows, pool = [], None
  for workdir in _WORKDIRS.value:
    trained = embedding.load_trained(workdir)
    if not hasattr(trained.task, "vocab"):
      raise ConfigError(f"{workdir} is not a SMILES run (data.name={trained.config.data.name!r}).")
    if pool is None:
      if _START_FILE.value:
        pool = molecule_files.read_smiles_file(_START_FILE.value)
      else:
        data = ml_collections.ConfigDict(trained.config.data.to_dict())
        if _DATA_DIR.value:
          data.data_dir = _DATA_DIR.value
        pool = molecule_files.read_smiles_file(molecules.moses_file("test", data)[0])
    for task in tasks:
      starts = start_molecules(pool, trained, preset, task, _SEED.value)
      for optimizer in OPTIMIZERS:
        start = time.perf_counter()
        result = lo.optimize(trained, starts, task, optimizer, preset["population"],
                             preset["generations"], preset["sigma"], _SEED.value)
        rows.append(dict(workdir=workdir, method=trained.config.loss.method, benchmark=task.name,
                         optimizer=optimizer, summary=lo.summarize(result),
                         oracle_calls_per_molecule=preset["population"] * preset["generations"],
                         seconds=round(time.perf_counter() - start, 1)))
        logging.info("%s", json.dumps(rows[-1]))
  (out / "optimize.json").write_text(json.dumps(
      {"preset": _PRESET.value, **preset, "rows": rows}, indent=2) + "\n")
  (out / "optimize.md").write_text(markdown(rows))
  print(markdown(rows))


if __name__ == "__main__":
  cli.run(main)
