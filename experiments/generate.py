"""Molecule generation metrics of a trained SMILES run (prior and around-encoding samples).

  python -m experiments.generate --workdir=DIR --num_samples=10000 --temperatures=0,1 \
      --radii=0,0.5,1,2

Writes DIR/generation.json: validity, uniqueness, novelty (vs the run's training corpus) and
internal diversity (ECFP4) of decoded prior samples per temperature (0 = greedy), the same for
z = mu(x) + r * eps around held-out molecules per radius r (MolMIM's sampling), and the coverage
diagnostics of the prior by the aggregate posterior (docs/generation.md).
"""

import json
import pathlib
import time

from absl import flags, logging

from cmim_jax import embedding
from cmim_jax.errors import ConfigError
from cmim_jax.generation import molecule_sampling
from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained SMILES run.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 10000, "Prior samples per temperature.")
_NUM_ENCODED = flags.DEFINE_integer("num_encoded", 1000, "Held-out molecules sampled around.")
_TEMPERATURES = flags.DEFINE_list("temperatures", ["0", "1"], "Decoding temperatures; 0 = greedy.")
_RADII = flags.DEFINE_list("radii", ["0", "0.5", "1", "2"], "Radii r of z = mu + r * eps.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  trained = embedding.load_trained(_WORKDIR.value)
  if not hasattr(trained.task, "test_tokens"):
    raise ConfigError(f"{_WORKDIR.value} is not a SMILES pretraining run "
                      f"(data.name={trained.config.data.name!r}).")
  start = time.perf_counter()
  report = molecule_sampling.molecule_report(
      trained, _NUM_SAMPLES.value, [float(t) for t in _TEMPERATURES.value],
      [float(r) for r in _RADII.value], _NUM_ENCODED.value, _SEED.value)
  report.update(method=trained.config.loss.method, step=trained.step,
                seconds=round(time.perf_counter() - start, 1))
  path = pathlib.Path(_WORKDIR.value) / "generation.json"
  path.write_text(json.dumps(report, indent=2) + "\n")
  logging.info("%s", json.dumps(report))
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  cli.run(main)
