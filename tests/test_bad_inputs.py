"""Malformed inputs: each is refused with an error of the project's types that names the bad thing,
or skipped and counted; none trains or evaluates into a wrong result.

Most cases call the library in-process; a few run the command-line entry points to check the
one-line error (exit status 2, no traceback without --verbose).
"""

import collections
import gzip
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cmim_jax import checkpointing, config_validation, embedding, errors, tasks, training
from cmim_jax.data import idx, mnist, molecule_files, molecules
from cmim_jax.embedding import files as embedding_files
from experiments.configs import fashion_mnist as fashion_config
from experiments.configs import mnist as mnist_config
from experiments.configs import molecules as molecules_config
from experiments.configs import toy2d as toy2d_config
from tests.conftest import make_tiny_config
from tests.test_molecules_data import serve_folder

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str, verbose: bool = False) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "CMIM_VERBOSE"}
  if verbose:
    env["CMIM_VERBOSE"] = "1"
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> None:
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
  assert len(error_lines) == 1, result.stderr[-3000:]
  for name in names:
    assert name in error_lines[0]


# ---------------------------------------------------------------------------------------------
# Config values: refused before anything is created, every bad field named with its fix.


@pytest.mark.parametrize("field, value", [
    ("train.num_steps", -5),
    ("train.num_steps", 0),
    ("loss.temperature", -0.1),
    ("loss.temperature", 0.0),
    ("loss.temperature", float("inf")),
    ("train.learning_rate", float("nan")),
    ("train.learning_rate", 0.0),
    ("model.latent_dim", 0),
    ("data.batch_size", 1),
    ("loss.method", "simclr"),
    ("loss.contrastive_anchor", "x"),
    ("loss.infonce_weight", -1.0),
    ("model.encoder", "resnet"),
    ("data.name", "cifar"),
    ("train.log_every_steps", 0),
    ("checkpoint.every_steps", 0),
    ("checkpoint.max_to_keep", 0),
    ("eval.batch_size", 0),
])
def test_bad_config_value_is_named_with_its_fix(tiny_config, tmp_path, field, value):
  section, name = field.split(".")
  with tiny_config.unlocked():
    tiny_config[section][name] = value
  workdir = tmp_path / "run"
  with pytest.raises(errors.ConfigError, match=rf"{field}={value!r}: must be") as error:
    training.train_and_evaluate(tiny_config, workdir)
  assert f"--config.{field}=" in str(error.value)  # The fix.
  assert not workdir.exists()  # Nothing was created.


def test_every_bad_field_is_listed_in_one_error(tiny_config):
  tiny_config.train.num_steps = -5
  tiny_config.loss.temperature = -0.1
  tiny_config.model.latent_dim = 0
  with pytest.raises(errors.ConfigError, match="3 problems") as error:
    config_validation.validate(tiny_config, 8)
  for field in ("train.num_steps", "loss.temperature", "model.latent_dim"):
    assert field in str(error.value)


def test_batch_must_divide_by_the_devices_and_reach_two_for_contrastive_methods(tiny_config):
  tiny_config.data.batch_size = 12
  with pytest.raises(errors.ConfigError, match=r"multiple of the device count \(8\)"):
    config_validation.validate(tiny_config, 8)
  tiny_config.data.batch_size = 1
  with pytest.raises(errors.ConfigError, match="contrasts each example"):
    config_validation.validate(tiny_config, 1)
  tiny_config.loss.method = "mim"  # No contrastive term: one example per batch is allowed.
  config_validation.validate(tiny_config, 1)


@pytest.mark.parametrize("get_config, variant", [
    (module.get_config, variant) for module, variants in (
        (mnist_config, ("", "quick", "paper", "paper_perceiver")),
        (molecules_config, ("", "quick", "gpu", "paper")), (toy2d_config, ("", "quick")),
        (fashion_config, ("",)))
    for variant in variants])
def test_shipped_configs_are_valid(get_config, variant):
  config_validation.validate(get_config(variant), 8)


@pytest.fixture(scope="module")
def trained_run(synthetic_mnist_dir, tmp_path_factory):
  """A finished tiny run with checkpoints at steps 3 and 6, and its config."""
  config = make_tiny_config(synthetic_mnist_dir)
  workdir = tmp_path_factory.mktemp("trained") / "run"
  training.train_and_evaluate(config, workdir)
  return workdir, config


@pytest.fixture
def run_copy(trained_run, tmp_path):
  """A copy of the trained run to damage."""
  workdir, config = trained_run
  return shutil.copytree(workdir, tmp_path / "run"), config.copy_and_resolve_references()


def test_num_steps_below_the_latest_checkpoint_names_both(run_copy):
  workdir, config = run_copy
  config.train.num_steps = 4
  with pytest.raises(errors.ConfigError, match=r"num_steps=4 is below .*\(6\)"):
    training.train_and_evaluate(config, workdir)


# ---------------------------------------------------------------------------------------------
# Image files (IDX): the error names the file.


def _image_data_config(folder, **fields):
  config = mnist_config.get_config().data
  config.data_dir = str(folder)
  config.allow_fallback = False
  for name, value in fields.items():
    config[name] = value
  return config


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:1000])), "truncated"),
    (lambda p: p.write_bytes(gzip.compress(b"\x01\x02" + gzip.decompress(p.read_bytes())[2:])),
     "bad magic number"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "cannot decompress"),
    (lambda p: p.write_bytes(b""), "not an IDX file|cannot decompress"),
])
def test_damaged_idx_file_is_named(synthetic_mnist_dir, tmp_path, damage, message):
  folder = shutil.copytree(synthetic_mnist_dir, tmp_path / "idx")
  damage(folder / "train-images-idx3-ubyte.gz")
  with pytest.raises(errors.DataError, match=message) as error:
    mnist.load_image_dataset(_image_data_config(folder))
  assert "train-images-idx3-ubyte.gz" in str(error.value)


def test_label_count_mismatch_names_both_files(synthetic_mnist_dir, tmp_path):
  folder = shutil.copytree(synthetic_mnist_dir, tmp_path / "idx")
  labels = idx.read_idx(folder / "t10k-labels-idx1-ubyte.gz")
  idx.write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:-3])
  with pytest.raises(errors.DataError, match="t10k-labels-idx1-ubyte.gz.*do not belong together"):
    mnist.load_image_dataset(_image_data_config(folder))


def test_missing_idx_file_is_named(synthetic_mnist_dir, tmp_path):
  folder = shutil.copytree(synthetic_mnist_dir, tmp_path / "idx")
  (folder / "t10k-images-idx3-ubyte.gz").unlink()
  with pytest.raises(errors.MissingInputError, match="t10k-images-idx3-ubyte.gz"):
    mnist.load_image_dataset(_image_data_config(folder))


def test_download_with_a_bad_checksum_is_refused_and_not_cached(synthetic_mnist_dir, tmp_path,
                                                               monkeypatch):
  monkeypatch.setenv("CMIM_JAX_CACHE", str(tmp_path / "cache"))
  monkeypatch.setattr(mnist, "_tfds_installed", lambda: False)
  with serve_folder(synthetic_mnist_dir) as url:
    config = _image_data_config("", mirrors=(url,))
    with pytest.raises(errors.DataUnavailableError, match="does not match") as error:
      mnist.load_image_dataset(config)  # Synthetic digits are not MNIST's.
  assert "train-images-idx3-ubyte.gz" in str(error.value)
  assert not any((tmp_path / "cache").rglob("*.gz"))


# ---------------------------------------------------------------------------------------------
# Text files (SMILES corpora, MoleculeNet CSVs): errors name the file and line; a corpus's bad
# rows are skipped and counted per cause.


def test_empty_corpus_is_an_error_naming_the_file(tmp_path):
  (tmp_path / "empty.csv").write_text("")
  with pytest.raises(errors.DataError, match=r"empty.csv is empty"):
    molecule_files.read_smiles_file(tmp_path / "empty.csv", "SMILES")


def test_corpus_without_the_column_lists_its_columns(tmp_path):
  (tmp_path / "c.csv").write_text("id,structure\n1,CCO\n")
  with pytest.raises(errors.DataError, match=r"c.csv has no column 'SMILES'.*'structure'"):
    molecule_files.read_smiles_file(tmp_path / "c.csv", "SMILES")


def test_non_utf8_line_is_named_or_skipped_and_counted(tmp_path, caplog):
  path = tmp_path / "corpus.csv"
  path.write_bytes(b"SMILES\nCCO\nC\xffC\nCCN\n")
  skipped = collections.Counter()
  assert molecule_files.read_smiles_file(path, "SMILES", skipped) == ["CCO", "CCN"]
  assert skipped == {"not_utf8": 1}
  assert "corpus.csv:3: byte 0xff" in caplog.text
  with pytest.raises(errors.DataError, match=r"corpus.csv:3: byte 0xff at column 2 is not UTF-8"):
    molecule_files.read_smiles_file(path, "SMILES")


def test_corrupt_gzip_corpus_is_named(tmp_path):
  path = tmp_path / "corpus.csv.gz"
  whole = gzip.compress(b"SMILES\n" + "".join(f"C{'C' * (i % 7)}O{i}\n" for i in range(2000)).encode())
  path.write_bytes(whole[:len(whole) // 2])
  with pytest.raises(errors.DataError, match="corpus.csv.gz: cannot read it"):
    molecule_files.read_smiles_file(path, "SMILES")


def test_corpus_rows_are_skipped_and_counted_per_cause(tmp_path):
  rows = ["CCO", "c1ccccc1", "CCN", "CC(=O)O", "ClCCBr", "CCCC", "CCCl", "c1ccncc1"] * 4
  lines = b"SMILES,name\n" + b"".join(f"{s},x\n".encode() for s in rows)
  lines += b",no smiles\nC1CC,unclosed ring\nC\xe9C,latin-1\nCC$C,no token\n" + b"C" * 80 + b",long\n"
  (tmp_path / "corpus.csv").write_bytes(lines)
  config = molecules_config.get_config("quick")
  config.data.corpus_path = str(tmp_path / "corpus.csv")
  config.data.num_test_molecules = 4
  input_rows = tasks.build_task(config).input_rows
  assert input_rows["file_rows_skipped"] == {"not_utf8": 1, "no_smiles": 1}
  counts = {k: input_rows["train"][k] + input_rows["test"][k]
            for k in ("read", "kept", "invalid", "untokenizable", "too_long")}
  # RDKit rejects C1CC and CC$C before the tokenizer sees them; 80 carbons exceed max_length.
  assert counts == {"read": 35, "kept": 32, "invalid": 2, "untokenizable": 0, "too_long": 1}


def test_the_task_s_row_counts_are_in_the_summary(run_copy, monkeypatch):
  workdir, config = run_copy
  counts = {"train": {"read": 9, "kept": 7, "invalid": 2}}
  build = tasks.images.ImageTask.__init__

  def build_with_counts(task, *args, **kwargs):
    build(task, *args, **kwargs)
    task.input_rows = counts  # As a source that skipped rows would report them.

  monkeypatch.setattr(tasks.images.ImageTask, "__init__", build_with_counts)
  summary = training.train_and_evaluate(config, workdir)  # Finished: evaluates only.
  assert summary["input_rows"] == counts
  assert json.loads((workdir / "summary.json").read_text())["input_rows"] == counts


@pytest.mark.parametrize("content, message", [
    ("smiles,y\nCCO,1.5\nCCN,n/a\n", r"mine.csv:3: no numeric target in column 'y'"),
    ("smiles,y\nCCO,1.5\nCCN\n", r"mine.csv:3: 1 cells, but the header names 2 columns"),
    ("smiles,y\nCCO,nan\n", r"mine.csv:2: the target in column 'y' is nan"),
    ("smiles,y\nCCO,inf\n", r"mine.csv:2: the target .* is inf"),
    ("", r"mine.csv is empty"),
    ("smiles\nCCO\n", r"mine.csv has only the SMILES column"),
])
def test_bad_moleculenet_targets_name_file_and_line(tmp_path, content, message):
  (tmp_path / "mine.csv").write_text(content)
  with pytest.raises(errors.DataError, match=message):
    molecule_files.read_labelled_csv(tmp_path / "mine.csv")


def test_non_utf8_moleculenet_file_names_file_and_line(tmp_path):
  (tmp_path / "mine.csv").write_bytes(b"smiles,y\nCCO,1\nC\xc3(C,2\n")
  with pytest.raises(errors.DataError, match=r"mine.csv:3: byte 0xc3 .* not UTF-8"):
    molecule_files.read_labelled_csv(tmp_path / "mine.csv")


def test_pickled_npz_is_refused_naming_the_file(tmp_path):
  path = tmp_path / "test.npz"
  np.savez(path, mean=np.zeros((2, 3)), labels=np.array([{"a": 1}, None], dtype=object))
  with pytest.raises(ValueError, match="test.npz") as error:
    embedding_files.load_npz(path)
  assert "pickle" in str(error.value).lower() or "object" in str(error.value).lower()


# ---------------------------------------------------------------------------------------------
# Checkpoints: every step has a SHA-256 manifest; a damaged newest step is moved aside.


def _largest_state_file(step_dir: pathlib.Path) -> pathlib.Path:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _truncate(path):
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _empty(path):
  path.write_bytes(b"")


def _overwrite_64_bytes(path):
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
  path.write_bytes(bytes(data))  # Same size, 64 bytes changed in place.


def _params(workdir, step):
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints")
  try:
    return checkpointer.restore_state(step=step)["params"]
  finally:
    checkpointer.close()


def test_every_checkpoint_has_a_manifest_that_verifies(trained_run):
  workdir, _ = trained_run
  for step in (3, 6):
    step_dir = workdir / "checkpoints" / str(step)
    manifest = json.loads((step_dir / checkpointing.MANIFEST).read_text())
    assert _largest_state_file(step_dir).relative_to(step_dir).as_posix() in manifest["files"]
    assert checkpointing.manifest_problem(step_dir) is None


@pytest.mark.parametrize("damage", [_truncate, _empty, _overwrite_64_bytes])
def test_damaged_newest_checkpoint_is_skipped_by_a_reader_and_moved_aside_by_the_trainer(
    run_copy, damage, caplog):
  workdir, config = run_copy
  damaged_file = _largest_state_file(workdir / "checkpoints" / "6")
  damage(damaged_file)
  trained = embedding.load_trained(workdir)
  assert trained.step == 3
  assert "changed files" in caplog.text and damaged_file.name in caplog.text
  assert "instead of step(s) [6]" in caplog.text
  assert damaged_file.is_file() and not (workdir / "checkpoints.damaged").exists()  # Untouched.
  training.train_and_evaluate(config, workdir)  # The writer quarantines it and trains 4..6 again.
  assert [p.name.split("-")[0] for p in (workdir / "checkpoints.damaged").iterdir()] == ["6"]
  assert checkpointing.manifest_problem(workdir / "checkpoints" / "6") is None


def test_damaged_checkpoint_asked_for_by_step_is_an_error(run_copy):
  workdir, _ = run_copy
  _empty(_largest_state_file(workdir / "checkpoints" / "3"))
  with pytest.raises(errors.CheckpointError, match="step 3 .* is damaged"):
    embedding.load_trained(workdir, step=3)


def test_no_good_checkpoint_is_a_clear_error(run_copy):
  workdir, config = run_copy
  for step in (3, 6):
    _overwrite_64_bytes(_largest_state_file(workdir / "checkpoints" / str(step)))
  with pytest.raises(errors.CheckpointError, match=r"Every checkpoint .* \(steps \[3, 6\]\)"):
    training.train_and_evaluate(config, workdir)


def test_training_resumes_from_the_last_good_checkpoint_bit_identically(run_copy, trained_run):
  workdir, config = run_copy
  _overwrite_64_bytes(_largest_state_file(workdir / "checkpoints" / "6"))
  training.train_and_evaluate(config, workdir)  # Resumes from 3, trains 3 steps again.
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(trained_run[0], 6))


def test_checkpoints_without_manifests_still_load_with_a_warning(run_copy, caplog):
  workdir, _ = run_copy
  for step in (3, 6):
    (workdir / "checkpoints" / str(step) / checkpointing.MANIFEST).unlink()
  assert embedding.load_trained(workdir).step == 6
  assert "restoring it without verifying" in caplog.text


def test_a_step_without_manifest_beside_manifested_ones_is_unverified(run_copy, caplog):
  workdir, _ = run_copy
  (workdir / "checkpoints" / "6" / checkpointing.MANIFEST).unlink()
  assert embedding.load_trained(workdir).step == 3
  assert "no manifest" in caplog.text


_KILLED_CHILD = """
import json, pathlib, sys, time
import ml_collections
from cmim_jax import checkpointing, training

workdir = pathlib.Path(sys.argv[1])
original_save = checkpointing.Checkpointer.save

def save_then_hang(self, step, state, config, *args, **kwargs):
  original_save(self, step, state, config, *args, **kwargs)
  if step == 6:  # Orbax is writing step 6 in the background; step 3 is complete.
    (workdir.parent / "saving").touch()
    time.sleep(600)

checkpointing.Checkpointer.save = save_then_hang
config = ml_collections.ConfigDict(json.loads(pathlib.Path(sys.argv[2]).read_text()))
training.train_and_evaluate(config, workdir)
"""


def test_sigkill_during_a_checkpoint_write_resumes_bit_identically(trained_run, tmp_path):
  _, config = trained_run
  config_file = tmp_path / "config.json"
  config_file.write_text(config.to_json())
  workdir = tmp_path / "killed"
  child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(workdir), str(config_file)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while not (tmp_path / "saving").exists():
    assert child.poll() is None, child.stderr.read()[-3000:]
    assert time.monotonic() < deadline
    time.sleep(0.05)
  child.send_signal(signal.SIGKILL)
  child.wait()
  child.stderr.close()

  summary = training.train_and_evaluate(config, workdir)
  assert summary["step"] == 6
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(trained_run[0], 6))
  assert summary == json.loads((trained_run[0] / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------
# The command line: the project's errors are one line and exit status 2.


def test_cli_bad_config_is_one_line_and_creates_nothing(tmp_path):
  workdir = tmp_path / "run"
  result = run_cli("experiments.main", "--config=experiments/configs/mnist.py:quick",
                   f"--workdir={workdir}", "--config.train.num_steps=-5",
                   "--config.loss.temperature=-0.1")
  assert_one_line_error(result, "train.num_steps=-5", "loss.temperature=-0.1")
  assert not workdir.exists()


def test_cli_embed_without_checkpoints_is_one_line_and_verbose_shows_the_traceback(tmp_path):
  (tmp_path / "checkpoints").mkdir()
  result = run_cli("experiments.embed", f"--workdir={tmp_path}")
  assert_one_line_error(result, f"No checkpoint in {tmp_path / 'checkpoints'}")
  verbose = run_cli("experiments.embed", f"--workdir={tmp_path}", verbose=True)
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr
  assert "MissingInputError: No checkpoint" in verbose.stderr


def test_cli_paper_script_with_a_missing_data_dir_is_one_line(tmp_path):
  missing = tmp_path / "no_such_folder"
  result = run_cli("experiments.paper.contrastive_sweep", "--preset=smoke",
                   f"--out={tmp_path / 'out'}", f"--data_dir={missing}")
  assert_one_line_error(result, str(missing))
