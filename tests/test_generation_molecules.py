"""Molecule generation metrics on sets with known values, the prior-coverage diagnostics, and the
generation / optimisation entry points on a tiny SMILES run."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from cmim_jax import embedding, training
from cmim_jax.generation import latent_optimization as lo
from cmim_jax.generation import molecule_metrics, molecule_sampling
from cmim_jax.models import sequence
from tests.test_molecules_train import synthetic_smiles, tiny_smiles_config

pytest.importorskip("rdkit")


def test_validity_uniqueness_novelty_known_values():
  metrics = molecule_metrics.generation_metrics(["CCO", "OCC", "C(C)O", "C1CC", ""], ["CCN"])
  assert metrics["validity"] == pytest.approx(3 / 5)  # An unclosed ring and "" are invalid.
  assert metrics["uniqueness"] == pytest.approx(1 / 3)  # Three spellings of ethanol.
  assert metrics["novelty"] == 1.0  # Disjoint from the corpus.
  assert np.isnan(metrics["internal_diversity"])  # One distinct molecule: no pairs.
  same = molecule_metrics.generation_metrics(["CCO", "c1ccccc1"], ["OCC", "c1ccccc1"])
  assert same["novelty"] == 0.0 and same["uniqueness"] == 1.0  # Identical sets.


def test_similarity_and_internal_diversity_known_values():
  assert molecule_metrics.tanimoto("c1ccccc1O", "Oc1ccccc1") == 1.0  # A molecule against itself.
  assert molecule_metrics.tanimoto("CCO", "not smiles") == 0.0
  pair = molecule_metrics.tanimoto("CCO", "c1ccccc1")
  assert pair < 0.2
  diversity = molecule_metrics.internal_diversity(["CCO", "c1ccccc1", "OCC"])
  assert diversity == pytest.approx(1.0 - pair)


def test_coverage_is_high_for_prior_posteriors_and_low_for_narrow_ones():
  rng = np.random.default_rng(0)
  prior = rng.standard_normal((300, 8))
  matched = molecule_sampling.coverage_diagnostics(
      rng.standard_normal((300, 8)) * 0.3, np.full((300, 8), np.log(0.91)), prior)
  assert matched["prior_coverage"] > 0.8  # Var(mu) + sigma^2 = 1: q(z) is the prior.
  assert matched["aggregate_variance"] == pytest.approx(1.0, abs=0.1)
  narrow = molecule_sampling.coverage_diagnostics(
      rng.standard_normal((300, 8)) * 0.3, np.full((300, 8), np.log(1e-4)), prior)
  assert narrow["prior_coverage"] < 0.05 and narrow["posterior_std_mean"] == pytest.approx(0.01)


def test_property_oracles():
  assert lo.qed("not smiles") is None and 0.0 < lo.qed("CCO") < 1.0
  values, similarity, fitness = lo.score(["CCO", "xx"], ["CCO", "CCO"], lo.Task("qed", 0.4, 0.9))
  assert similarity[0] == 1.0 and fitness[0] == values[0] and fitness[1] == lo.INVALID_SCORE
  from rdkit import Chem  # pylint: disable=g-import-not-at-top
  from rdkit.Chem import Crippen  # pylint: disable=g-import-not-at-top
  from rdkit.Contrib.SA_Score import sascorer  # pylint: disable=g-import-not-at-top
  for smiles, ring_penalty in (("C1CCCCC1", 0), ("C1CCCCCCCC1", 3)):  # 9-ring: 3 atoms past 6.
    mol = Chem.MolFromSmiles(smiles)
    assert lo.penalized_logp(smiles) == pytest.approx(
        Crippen.MolLogP(mol) - sascorer.calculateScore(mol) - ring_penalty)


@pytest.fixture(scope="module")
def smiles_run(tmp_path_factory):
  corpus = tmp_path_factory.mktemp("corpus") / "corpus.smi"
  corpus.write_text("SMILES\n" + "\n".join(synthetic_smiles()) + "\n")
  workdir = tmp_path_factory.mktemp("smiles_run")
  config = tiny_smiles_config(corpus)
  config.eval.likelihood_samples = 3
  return corpus, workdir, training.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_smiles_run_bound_sampling_generation_and_optimization(smiles_run, tmp_path):
  """One test over one tiny trained run (trained once whatever the number of test workers)."""
  corpus, workdir, summary = smiles_run
  assert summary["likelihood_num_samples"] == 3 and summary["nll_bound"] > 0
  assert "pictures" not in summary
  assert summary["bits_per_dim_bound"] < summary["nll_bound"]  # Several tokens per molecule.

  # Sampling at a temperature near 0 is greedy decoding; at a high one it is not.
  trained = embedding.load_trained(workdir)
  z = np.asarray(jax.random.normal(jax.random.key(0), (16, 8)))
  length = trained.task.seq_length
  greedy = molecule_sampling.decode_latents(trained.model, trained.params, trained.mesh, z,
                                            length, jax.random.key(1), 0.0)
  cold = molecule_sampling.decode_latents(trained.model, trained.params, trained.mesh, z,
                                          length, jax.random.key(1), 1e-4)
  np.testing.assert_array_equal(greedy, cold)
  hot = sequence.sample_decode(trained.model, trained.params, z, length, jax.random.key(2), 50.0)
  assert not np.array_equal(np.asarray(hot), greedy)

  report = molecule_sampling.molecule_report(trained, 16, [0.0, 1.0], [0.0, 1.0], num_encoded=16)
  assert set(report["prior"]) == {"temperature_0", "temperature_1"}
  assert set(report["around_encodings"]) == {"radius_0", "radius_1"}
  for metrics in [*report["prior"].values(), *report["around_encodings"].values()]:
    assert 0.0 <= metrics["validity"] <= 1.0 and "novelty" in metrics
  assert 0.0 <= report["coverage"]["prior_coverage"] <= 1.0

  result = subprocess.run(
      [sys.executable, "-m", "experiments.optimize", f"--workdirs={workdir}", "--preset=smoke",
       f"--start_smiles_file={corpus}", f"--out={tmp_path}"],
      capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  rows = json.loads((tmp_path / "optimize.json").read_text())["rows"]
  assert {(r["benchmark"], r["optimizer"]) for r in rows} == {
      (b, o) for b in ("qed_sim0.4", "plogp_sim0.4", "plogp_sim0.6") for o in ("cma_es", "random")}
  for row in rows:
    assert row["summary"]["num_molecules"] == 2 and row["oracle_calls_per_molecule"] == 8
    assert 0.0 <= row["summary"]["success_rate"] <= 1.0
  assert "| success rate" in (tmp_path / "optimize.md").read_text()
