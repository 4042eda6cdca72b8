"""SMILES pretraining end to end on 8 simulated devices, and the downstream regression task."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import checkpointing, embedding, objectives, tasks, training
from cmim_jax import sharding as sharding_lib
from cmim_jax.data import batching, ecfp4
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.tasks import molecules as molecule_tasks
from experiments.configs import molecules as molecules_config

SUBSTITUENTS = ["O", "N", "C(=O)O", "C(Cl)", "c1ccccc1", "S", "C#C"]


def synthetic_smiles():
  """175 valid molecules: alkyl chains around a substituent, e.g. CCc1ccccc1CC."""
  return [f"{'C' * a}{x}{'C' * b}"
          for a, b, x in itertools.product(range(1, 6), range(5), SUBSTITUENTS)]


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("corpus") / "corpus.smi"
  path.write_text("SMILES\n" + "\n".join(synthetic_smiles()) + "\n")
  return path


@pytest.fixture(scope="module")
def regression_csv(tmp_path_factory):
  path = tmp_path_factory.mktemp("regression") / "mine.csv"
  rows = [f"{s},{len(s) / 3:.3f}" for s in synthetic_smiles()[::5]]
  rows.append("C[C@@H](O)c1ccccc1Br,1.0")  # Tokens MOSES-like corpora lack, and a long one:
  rows.append("CCCCCCCCCCCCCCCCCCCCCCCCC,2.0")
  path.write_text("smiles,y\n" + "\n".join(rows) + "\n")
  return path


def tiny_smiles_config(corpus_path):
  config = molecules_config.get_config()
  config.data.corpus_path = str(corpus_path)
  config.data.max_length = 20
  config.data.num_test_molecules = 24
  config.data.batch_size = 16
  config.model.num_latents = 2
  config.model.latent_dim = 4
  config.model.width = 16
  config.model.num_heads = 2
  config.model.encoder_layers = 1
  config.model.decoder_layers = 1
  config.train.num_steps = 2
  config.train.log_every_steps = 1
  config.checkpoint.every_steps = 2
  config.eval.batch_size = 16
  config.eval.num_molecules = 16
  config.eval.num_prior_samples = 16
  config.eval.likelihood_samples = 2  # The bound kept cheap (its own tests raise K).
  return config


@pytest.mark.slow
def test_cmim_pretraining_then_regression_embeddings(corpus_path, regression_csv, tmp_path):
  assert jax.device_count() == 8
  config = tiny_smiles_config(corpus_path)
  summary = training.train_and_evaluate(config, tmp_path)
  assert summary["data_source"] == f"file:{corpus_path}"
  assert json.loads((tmp_path / "summary.json").read_text()) == summary
  assert summary["num_test_molecules"] == 16
  for name in ("reconstruction_token_accuracy", "reconstruction_exact_match",
               "reconstruction_validity", "prior_validity", "prior_uniqueness"):
    assert 0.0 <= summary[name] <= 1.0, name
  assert summary["reconstruction_nll"] > 0
  metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)

  # The vocabulary travels with the checkpoint: the saved config points at workdir/vocab.json.
  checkpointer = checkpointing.Checkpointer(tmp_path / "checkpoints")
  saved = checkpointer.restore_config()
  assert saved.data.vocab_path == str((tmp_path / "vocab.json").absolute())
  vocab = smiles_lib.Vocabulary.load(saved.data.vocab_path)
  assert set(vocab.tokens) >= {"c", "Cl", "#"}

  # Rebuild a task from the saved config with data.name swapped, as the embed tool does.
  saved.data.name = "smiles_csv"
  saved.data.csv_path = str(regression_csv)
  task = tasks.build_task(saved)
  assert task.embedding_splits == ("all",)
  inputs, annotations = task.embedding_inputs("all")
  num = len(task.smiles)
  assert inputs.shape == (num, 22) and inputs.dtype == np.int32
  assert np.any(inputs == smiles_lib.UNK_ID)  # [C@@H] and Br are not in the vocabulary.
  assert np.all(inputs[-1, 1:21] == vocab.tokens.index("C"))  # Truncated to max_length tokens.
  assert sorted(k for k in annotations if not k.startswith("coverage_")) == [
      "split_random0", "split_random1", "split_random2", "split_scaffold", "targets", "task_names"]
  assert int(annotations["coverage_truncated"]) == 1  # The 25-carbon chain.
  assert annotations["targets"].shape == (num, 1)

  model = task.build_model(saved.model)
  mesh = sharding_lib.make_data_mesh()
  abstract = jax.eval_shape(
      lambda: training.create_train_state(model, training.make_optimizer(saved.train),
                                          task.example_input, jax.random.key(0), mesh))
  state = checkpointer.restore_state(jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_lib.replicated(mesh)),
      abstract))
  checkpointer.close()
  embedded = embedding.embed_inputs(model, state.params, inputs, mesh, batch_size=16)
  assert embedded["mean"].shape == (num, 8) and embedded["informative"].shape == (num, 16)
  assert np.all(np.isfinite(embedded["informative"]))

  # The ECFP4 baseline describes the same molecules with the same annotations.
  features = ecfp4.ecfp4_features(saved.data)
  assert features["ecfp4"].shape == (num, 2048)
  assert set(np.unique(features["ecfp4"])) <= {0.0, 1.0}
  for key, value in annotations.items():
    if not key.startswith("coverage_"):  # Coverage describes the tokens, not the fingerprints.
      np.testing.assert_array_equal(features[key], value, err_msg=key)


def test_resume_rejects_a_different_vocabulary(corpus_path, tmp_path):
  config = tiny_smiles_config(corpus_path)
  smiles_lib.build_vocabulary([["C"]]).save(tmp_path / "vocab.json")
  with pytest.raises(ValueError, match="different vocabulary"):
    tasks.build_task(config).save_assets(tmp_path, config)


def test_regression_task_needs_the_vocabulary(corpus_path):
  config = tiny_smiles_config(corpus_path)
  config.data.name = "esol"
  with pytest.raises(ValueError, match="data.vocab_path"):
    tasks.build_task(config)


@pytest.fixture(scope="module")
def smiles_setup(corpus_path):
  """The tiny task, its model, and an initial train state to copy (train steps donate theirs)."""
  config = tiny_smiles_config(corpus_path)
  task = tasks.build_task(config)
  mesh = sharding_lib.make_data_mesh()
  model = task.build_model(config.model)
  state = training.create_train_state(model, training.make_optimizer(config.train),
                                      task.example_input, jax.random.key(0), mesh)
  return config, task, mesh, model, state


@pytest.mark.parametrize("method_name", ["vae", "cvae", "mim", "cmim_sum"])
def test_every_sequence_method_trains_sharded(smiles_setup, method_name):
  config, task, mesh, model, initial_state = smiles_setup
  config = config.copy_and_resolve_references()
  config.loss.method = method_name
  state = jax.tree.map(jnp.copy, initial_state)
  step = training.make_train_step(model, objectives.get_method(method_name), task, config, mesh)
  batcher = batching.DeviceBatcher(task.train_arrays, config.data.batch_size, mesh, seed=0)
  losses = []
  for i in range(2):
    state, metrics = step(state, batcher.batch(i), jax.random.key(1))
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and float(metrics["reconstruction"]) > 0
  assert int(state.step) == 2


def test_reconstruction_metrics_known_values():
  targets = np.array([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0]])
  decoded = np.array([[1, 5, 6, 2, 0], [1, 7, 5, 2, 0]])  # Row 1 misses its EOS.
  metrics = molecule_tasks.reconstruction_metrics(decoded, targets)
  assert metrics["reconstruction_token_accuracy"] == pytest.approx(4 / 5)
  assert metrics["reconstruction_exact_match"] == pytest.approx(1 / 2)


def test_validity_and_uniqueness_known_values():
  validity, uniqueness = molecule_tasks.validity_and_uniqueness(
      ["CCO", "OCC", "C1CC", "", "c1ccccc1"])
  assert validity == pytest.approx(3 / 5)  # "C1CC" (open ring) and "" are not molecules.
  assert uniqueness == pytest.approx(2 / 3)  # CCO and OCC are one molecule.
