"""The streaming input pipeline: token files, batch order independent of the device count, and a
killed streaming run that resumes bit-identically."""

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cmim_jax import checkpointing, config_validation, sharding, training
from cmim_jax.data import molecule_files, molecules, streaming, token_file
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.errors import ConfigError
from tests.conftest import xla_flags
from tests.test_molecules_train import synthetic_smiles, tiny_smiles_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """A .smi corpus of 175 molecules, plus two RDKit-invalid lines and a too-long one."""
  path = tmp_path_factory.mktemp("stream_corpus") / "corpus.smi"
  lines = synthetic_smiles()
  lines[10:10] = ["C1CC", "C&C", "C" * 30]
  path.write_text("SMILES\n" + "\n".join(lines) + "\n")
  return path


def test_token_file_equals_in_memory_tokenisation(corpus, tmp_path, monkeypatch):
  monkeypatch.setattr(token_file, "_CHUNK", 16)  # Several chunks.
  built = token_file.build_token_file(molecule_files.iter_smiles_file(corpus), tmp_path / "tokens",
                                      20)
  kept, tokenized, counts = molecules.filter_smiles(molecule_files.read_smiles_file(corpus), 20)
  vocab = smiles_lib.build_vocabulary(tokenized)
  expected, _ = smiles_lib.encode_batch(vocab, tokenized, 20)
  assert built.vocab == vocab and len(kept) == 175
  assert built.info["rows"] == dataclasses.asdict(counts) == {
      "read": 178, "kept": 175, "invalid": 2, "untokenizable": 0, "too_long": 1}
  np.testing.assert_array_equal(built.tokens(), expected)
  rows = np.array([174, 0, 33, 33])
  np.testing.assert_array_equal(built.source.read(rows)["tokens"], expected[rows])
  np.testing.assert_array_equal(built.source.rows(20, 30).read(np.array([0, 9]))["tokens"],
                                expected[[20, 29]])
  assert len(built.source.rows(20)) == 155
  # A given vocabulary fixes the ids; tokens it lacks become UNK.
  small = smiles_lib.Vocabulary(smiles_lib.SPECIAL_TOKENS + ("C", "O"))
  fixed = token_file.build_token_file(molecule_files.iter_smiles_file(corpus), tmp_path / "fixed",
                                      20, vocab=small)
  np.testing.assert_array_equal(fixed.tokens(), smiles_lib.encode_batch(small, tokenized, 20)[0])


def test_batches_depend_on_seed_and_step_only_and_each_epoch_permutes():
  source = streaming.ArraySource({"x": np.arange(100)[:, None] * 10})
  batches = {}
  for num_devices in (1, 2, 4):
    mesh = sharding.make_data_mesh(jax.devices()[:num_devices])
    batcher = streaming.StreamBatcher(source, 24, mesh, seed=3, num_steps=10)
    batches[num_devices] = [np.asarray(b["x"]) for b in map(batcher.to_global,
                                                            batcher.iterator())]
    rows = np.stack([batcher.global_rows(step) for step in range(10)])
    np.testing.assert_array_equal(np.stack(batches[num_devices])[..., 0], rows * 10)
  for num_devices in (2, 4):
    np.testing.assert_array_equal(batches[num_devices], batches[1])
  for epoch in range(2):  # 4 steps of 24 per epoch of 100: distinct rows, a new order each epoch.
    rows = np.concatenate([batcher.global_rows(4 * epoch + i) for i in range(4)])
    assert len(set(rows.tolist())) == 96
  assert not np.array_equal(batcher.global_rows(0), batcher.global_rows(4))
  other_seed = streaming.StreamBatcher(source, 24, mesh, seed=4, num_steps=10)
  assert not np.array_equal(other_seed.global_rows(0), batcher.global_rows(0))


def test_pipeline_field_is_validated(corpus):
  config = tiny_smiles_config(corpus)
  config.data.pipeline = "disk"
  with pytest.raises(ConfigError, match=r"data.pipeline='disk': must be one of \['device', "
                                        r"'stream'\]"):
    config_validation.validate(config, 8)


def _stream_config(corpus, token_dir):
  config = tiny_smiles_config(corpus)
  config.data.pipeline = "stream"
  config.data.token_file_dir = str(token_dir)
  config.train.num_steps = 9
  config.train.log_every_steps = 9  # (Diagnostics compile at the first log: after the kill.)
  config.checkpoint.every_steps = 3
  config.eval.at_end = False
  return config


def _params(workdir):
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
  step = checkpointer.latest_step()
  params = checkpointer.restore_state(step=step)["params"]
  checkpointer.close()
  return step, params


@pytest.mark.slow
def test_killed_streaming_run_resumes_bit_identically(corpus, tmp_path):
  config = _stream_config(corpus, tmp_path / "token_files")
  devices = jax.devices()[:2]  # Each run on 2 devices: quicker to compile on a small machine.
  training.train_and_evaluate(config, tmp_path / "straight", devices)  # Builds the token file.
  assert len(list((tmp_path / "token_files").iterdir())) == 1

  # The same run in a process killed (SIGKILL) once its first checkpoint is complete ...
  workdir = tmp_path / "killed"
  overrides = [f"--config.{field}={value}" for field, value in (
      ("data.corpus_path", corpus), ("data.max_length", 20), ("data.num_test_molecules", 24),
      ("data.batch_size", 16), ("data.pipeline", "stream"),
      ("data.token_file_dir", tmp_path / "token_files"), ("model.num_latents", 2),
      ("model.latent_dim", 4), ("model.width", 16), ("model.num_heads", 2),
      ("model.encoder_layers", 1), ("model.decoder_layers", 1), ("train.num_steps", 9),
      ("train.log_every_steps", 9), ("checkpoint.every_steps", 3), ("eval.at_end", False),
      ("compilation_cache_dir", "off"))]
  env = {**os.environ, "XLA_FLAGS": xla_flags(2)}
  with open(tmp_path / "killed.log", "w", encoding="utf-8") as log:
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.main", "--config=experiments/configs/molecules.py",
         f"--workdir={workdir}", *overrides], cwd=REPO_ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT)
    try:
      deadline = time.monotonic() + 300
      while not (workdir / "checkpoints" / "3" / checkpointing.MANIFEST).is_file():
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint of step 3 within 300 s"
        time.sleep(0.05)
      process.send_signal(signal.SIGKILL)
    finally:
      if process.poll() is None:
        process.kill()
      process.wait()
  killed_at = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True).latest_step()
  assert killed_at < 9, "the run finished before it was killed"

  # ... resumes to the same parameters, bit for bit.
  training.train_and_evaluate(config, workdir, devices)
  step_a, params_a = _params(tmp_path / "straight")
  step_b, params_b = _params(workdir)
  assert step_a == step_b == 9
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
