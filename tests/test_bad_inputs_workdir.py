"""Faults of checkpoints, workdirs and downloads (issue 27): each is refused with one error that
names the bad thing, or recovered; readers never change a run; a stopped run resumes exactly."""

import functools
import hashlib
import http.server
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from cmim_jax import checkpointing, embedding, errors, losses, metric_writers, training
from cmim_jax import workdir as workdir_lib
from cmim_jax.data import download
from cmim_jax.probes import partial
from tests.conftest import make_tiny_config
# The finished tiny run (checkpoints at steps 3 and 6) and copies of it to damage.
from tests.test_bad_inputs import run_copy, trained_run  # pylint: disable=unused-import
from tests.test_bad_inputs import assert_one_line_error, run_cli

REPO = pathlib.Path(__file__).resolve().parents[1]


def _tree(folder: pathlib.Path) -> dict[str, tuple[int, int]]:
  """Every path under `folder` -> (size, mtime_ns): what a reader must leave as it found it."""
  return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(folder.rglob("*"))}


def _manifest(step_dir: pathlib.Path) -> pathlib.Path:
  return step_dir / checkpointing.MANIFEST


# ---------------------------------------------------------------------------------------------
# Strict manifests: a step whose manifest is malformed or does not list exactly its files is
# unverified; a reader skips it (naming it and the step used) and changes nothing.


def _set_manifest(value):
  return lambda step_dir: _manifest(step_dir).write_text(json.dumps(value))


def _first_entry(step_dir):
  manifest = json.loads(_manifest(step_dir).read_text())
  return manifest, next(iter(manifest["files"]))


def _bad_digest(step_dir):
  manifest, name = _first_entry(step_dir)
  manifest["files"][name]["sha256"] = "not hex"
  _manifest(step_dir).write_text(json.dumps(manifest))


def _wrong_size_type(step_dir):
  manifest, name = _first_entry(step_dir)
  manifest["files"][name]["size"] = str(manifest["files"][name]["size"])
  _manifest(step_dir).write_text(json.dumps(manifest))


def _unlisted_file(step_dir):
  manifest, name = _first_entry(step_dir)
  del manifest["files"][name]
  _manifest(step_dir).write_text(json.dumps(manifest))


def _extra_file(step_dir):
  (step_dir / "state" / "added.bin").write_bytes(b"x")


def _missing_file(step_dir):
  _, name = _first_entry(step_dir)
  (step_dir / name).unlink()


@pytest.mark.parametrize("damage, problem", [
    (_set_manifest({"files": {}}), '"files" is not a non-empty object'),
    (_set_manifest({"files": ["a", "b"]}), '"files" is not a non-empty object'),
    (_set_manifest({"files": {"a": {"sha256": "0" * 64, "size": 1}}, "extra": 1}),
     'single key "files"'),
    (_set_manifest([1, 2]), 'single key "files"'),
    (lambda d: _manifest(d).write_text('{"files": {'), "is unreadable"),
    (_bad_digest, "is not {\"sha256\""),
    (_wrong_size_type, "is not {\"sha256\""),
    (_unlisted_file, "files not in its manifest"),
    (_extra_file, "files not in its manifest ['state/added.bin']"),
    (_missing_file, "missing files"),
])
def test_a_step_failing_its_manifest_is_skipped_by_a_reader_that_changes_nothing(
    run_copy, caplog, damage, problem):
  workdir, _ = run_copy
  damage(workdir / "checkpoints" / "6")
  before = _tree(workdir)
  assert problem in checkpointing.manifest_problem(workdir / "checkpoints" / "6")
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
  assert checkpointer.latest_step() == 3
  checkpointer.close()
  assert f"Skipping checkpoint {workdir / 'checkpoints' / '6'}" in caplog.text
  assert problem in caplog.text and "instead of step(s) [6]" in caplog.text
  assert _tree(workdir) == before  # Nothing moved, written or deleted.


def test_a_reader_of_a_read_only_run_with_a_damaged_step_uses_the_previous_one(run_copy, caplog):
  workdir, _ = run_copy
  (workdir / "checkpoints" / "6" / checkpointing.MANIFEST).unlink()  # Killed before its manifest.
  before = _tree(workdir)
  for path in [workdir, *workdir.rglob("*")]:
    path.chmod(path.stat().st_mode & ~0o222)
  try:
    trained = embedding.load_trained(workdir)
  finally:
    for path in [workdir, *workdir.rglob("*")]:
      path.chmod(path.stat().st_mode | 0o200)
  assert trained.step == 3 and "has no manifest" in caplog.text
  assert _tree(workdir) == before


def test_a_reader_finding_no_good_step_says_they_were_left_in_place(run_copy):
  workdir, _ = run_copy
  for step in ("3", "6"):
    _extra_file(workdir / "checkpoints" / step)
  with pytest.raises(errors.CheckpointError, match=r"\(steps \[3, 6\]\) .*left in place"):
    embedding.load_trained(workdir)
  assert not (workdir / "checkpoints.damaged").exists()


def test_a_read_only_checkpointer_refuses_to_save(run_copy):
  workdir, config = run_copy
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
  with pytest.raises(errors.CheckpointError, match="read-only"):
    checkpointer.save(7, {}, config)
  checkpointer.close()


# ---------------------------------------------------------------------------------------------
# Resume checks the saved config.


@pytest.mark.parametrize("changes, listed", [
    ({"loss.method": "mim"}, ["loss.method 'cmim' -> 'mim'"]),
    ({"model.latent_dim": 16, "model.hidden_sizes": (32,)},
     ["model.hidden_sizes [64] -> [32]", "model.latent_dim 8 -> 16"]),
    ({"model.dtype": "bfloat16"}, ["model.dtype 'float32' -> 'bfloat16'"]),
    ({"loss.temperature": 0.5, "seed": 1}, ["loss.temperature 1.0 -> 0.5", "seed 0 -> 1"]),
    ({"data.name": "fashion_mnist"}, ["data.name 'mnist' -> 'fashion_mnist'"]),
])
def test_resuming_with_a_config_that_changes_the_objective_lists_each_field(run_copy, changes,
                                                                            listed):
  workdir, config = run_copy
  with config.unlocked():
    for field, value in changes.items():
      section, _, name = field.rpartition(".")
      (config[section] if section else config)[name] = value
  with pytest.raises(errors.ConfigError, match="The config differs") as error:
    training.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert "\n" not in message and str(workdir / "checkpoints" / "6") in message
  for field in listed:
    assert field in message
  assert json.loads((workdir / "summary.json").read_text())["method"] == "cmim"  # Unchanged.


def test_fields_that_may_change_on_resume_do_and_the_summary_stays_complete(run_copy):
  workdir, config = run_copy
  first = json.loads((workdir / "summary.json").read_text())
  assert "diagnostics" in first
  config.train.log_every_steps = 3
  config.eval.batch_size = 32
  config.checkpoint.max_to_keep = 5
  summary = training.train_and_evaluate(config, workdir)  # Finished: evaluates only.
  assert summary["diagnostics"] == first["diagnostics"]
  assert json.loads((workdir / "summary.json").read_text()) == summary


# ---------------------------------------------------------------------------------------------
# One writer per workdir.


def test_a_second_trainer_gets_one_line_naming_the_workdir_and_the_holder(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with workdir_lib.WorkdirLock(workdir):
    result = run_cli("experiments.main", "--config=experiments/configs/mnist.py:quick",
                     f"--workdir={workdir}")
  assert_one_line_error(result, str(workdir), f"pid {os.getpid()}", "in use")
  assert sorted(p.name for p in workdir.iterdir()) == [workdir_lib.LOCK_FILE]  # Wrote nothing.


def test_the_lock_of_a_killed_trainer_is_not_stale(tmp_path):
  child = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from cmim_jax import workdir; "
       "workdir.WorkdirLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)",
       str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert child.stdout.readline().strip() == "locked"
  with pytest.raises(workdir_lib.WorkdirBusyError, match=f"pid {child.pid}"):
    workdir_lib.WorkdirLock(tmp_path).acquire()
  child.send_signal(signal.SIGKILL)
  child.wait()
  child.stdout.close()
  with workdir_lib.WorkdirLock(tmp_path):  # The kernel dropped the lock with the process.
    pass


# ---------------------------------------------------------------------------------------------
# Small files: whole lines and records, or ignored with a warning.


def test_a_torn_last_metrics_line_is_dropped_on_resume_with_a_warning(tmp_path, caplog):
  (tmp_path / "metrics.jsonl").write_text('{"step": 2, "loss": 1.0}\n{"step": 4, "loss": 0.5}\n'
                                          '{"step": 6, "lo')
  writer = metric_writers.MetricWriter(tmp_path, resume_step=6)
  writer.write(8, {"loss": 0.25})
  writer.close()
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [2, 4, 8]
  assert "Dropping line 3" in caplog.text and "metrics.jsonl" in caplog.text


def test_a_metrics_line_that_is_not_a_record_is_dropped(tmp_path, caplog):
  (tmp_path / "metrics.jsonl").write_text('{"step": 2}\n[1, 2]\n{"loss": 1}\n{"step": 4}\n')
  metric_writers.MetricWriter(tmp_path, resume_step=4).close()
  assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 2}\n{"step": 4}\n'
  assert "Dropping line 2" in caplog.text and "Dropping line 3" in caplog.text


_RECORD = {"values": {"accuracy": [0.5]}, "chosen": [], "seconds": 1.0, "train_rows": [10],
           "seeds": [0]}


@pytest.mark.parametrize("content", [
    json.dumps({"fingerprint": "f", "record": {k: v for k, v in _RECORD.items() if k != "seeds"}}),
    json.dumps({"fingerprint": "f", "record": {**_RECORD, "values": {"accuracy": "high"}}}),
    json.dumps({"fingerprint": "f", "record": {**_RECORD, "seconds": None}}),
    json.dumps({"fingerprint": "f"}),
    '{"fingerprint": "f", "rec',
])
def test_an_unreadable_partial_probe_record_is_ignored(tmp_path, caplog, content):
  store = partial.PartialResults(tmp_path)
  store.path("linear", "mean").write_text(content)
  assert store.load("linear", "mean", "f") is None
  assert "Ignoring" in caplog.text and "linear__mean.json" in caplog.text
  store.save("linear", "mean", "f", _RECORD)
  assert store.load("linear", "mean", "f") == _RECORD


# ---------------------------------------------------------------------------------------------
# Downloads: https only (http to loopback allowed), a size cap, cached files verified once.


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x.gz",
                                 "http://example.org/x.gz", "https:///x.gz", "example.org/x.gz"])
def test_a_mirror_that_is_not_https_is_refused_naming_it(tiny_config, tmp_path, url):
  tiny_config.data.mirrors = (url,)
  with pytest.raises(errors.ConfigError, match="data.mirrors=") as error:
    training.train_and_evaluate(tiny_config, tmp_path / "run")
  assert url in str(error.value) and not (tmp_path / "run").exists()
  with pytest.raises(errors.ConfigError, match="not an https:// URL"):
    download.download([url], tmp_path / "f", ["0" * 64])


class _Handler(http.server.SimpleHTTPRequestHandler):
  """Serves its folder; /redirect answers 302 to a plain-http host."""

  def do_GET(self):  # pylint: disable=invalid-name
    if self.path == "/redirect":
      self.send_response(302)
      self.send_header("Location", "http://example.org/f.bin")
      self.end_headers()
      return
    super().do_GET()

  def log_message(self, *args):
    del args


@pytest.fixture
def server(tmp_path):
  served = tmp_path / "served"
  served.mkdir()
  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
  httpd.shutdown()
  httpd.server_close()


def test_a_redirect_to_plain_http_is_not_followed(server, tmp_path):
  _, url = server
  with pytest.raises(download.DownloadError, match="redirected to 'http://example.org/f.bin'"):
    download.download([url + "redirect"], tmp_path / "f.bin", ["0" * 64])


def test_a_file_over_the_size_cap_is_dropped(server, tmp_path):
  served, url = server
  (served / "big.bin").write_bytes(b"x" * 5000)
  digest = hashlib.sha256(b"x" * 5000).hexdigest()
  with pytest.raises(download.DownloadError, match="5000 bytes exceed the cap of 4096"):
    download.download([url + "big.bin"], tmp_path / "big.bin", [digest], max_bytes=4096)
  assert not (tmp_path / "big.bin").exists()
  download.download([url + "big.bin"], tmp_path / "big.bin", [digest], max_bytes=5000)


def test_a_cached_file_changed_after_its_stamp_is_verified_again(server, tmp_path, caplog):
  served, url = server
  (served / "f.bin").write_bytes(b"hello")
  digest = hashlib.sha256(b"hello").hexdigest()
  path = download.cached_download([url + "f.bin"], tmp_path / "cache" / "f.bin", [digest])
  assert json.loads((path.parent / ".f.bin.verified").read_text())["sha256"] == digest
  path.write_bytes(b"jello")  # Same size; another modification time.
  assert not download.verified_in_cache(path, [digest])
  download.cached_download([url + "f.bin"], path, [digest])  # Replaced by a verified copy.
  assert path.read_bytes() == b"hello" and "does not match its SHA-256" in caplog.text


# ---------------------------------------------------------------------------------------------
# Losses reused in another model: flax's VAE example encoder (an unconstrained logvar head).


class _FlaxExampleVae:
  """flax's examples/vae model (Dense 500 -> relu -> mean and an unconstrained logvar head, 20
  latents; a mirrored decoder with Bernoulli logits) and its jitted Adam step for a given loss."""

  def __init__(self, loss_fn):
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    import optax  # pylint: disable=g-import-not-at-top

    class Vae(nn.Module):
      @nn.compact
      def __call__(self, x, key):
        hidden = nn.relu(nn.Dense(500)(x))
        mean, logvar = nn.Dense(20)(hidden), nn.Dense(20)(hidden)
        z = mean + jax.numpy.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        logits = nn.Dense(x.shape[-1])(nn.relu(nn.Dense(500)(z)))
        log_px = -optax.sigmoid_binary_cross_entropy(logits, x).sum(-1)
        return log_px, z, mean, logvar

    self.model, self.tx = Vae(), optax.adam(1e-3)

    def step(params, opt_state, x, key):
      loss, grads = jax.value_and_grad(
          lambda p: loss_fn(*self.model.apply(p, x, key)))(params)
      updates, opt_state = self.tx.update(grads, opt_state)
      return optax.apply_updates(params, updates), opt_state, loss

    self.step = jax.jit(step)

  def train(self, x, num_steps: int) -> list[float]:
    params = self.model.init(jax.random.key(1), x, jax.random.key(2))
    opt_state = self.tx.init(params)
    trajectory = []
    for i in range(num_steps):
      params, opt_state, loss = self.step(params, opt_state, x, jax.random.key(100 + i))
      trajectory.append(float(loss))
    return trajectory


_DIGITS = (jax.random.uniform(jax.random.key(0), (32, 784)) > 0.7).astype(np.float32)


@pytest.mark.parametrize("loss_fn", [
    lambda *out: losses.a_mim_loss(*out),
    lambda *out: losses.cmim_loss(*out, temperature=0.1),
    lambda log_px, z, mu, logvar: losses.vae_loss(log_px, mu, logvar),
], ids=["a_mim", "cmim", "vae"])
def test_each_loss_stays_finite_in_flax_s_vae_example(loss_fn):
  trajectory = _FlaxExampleVae(loss_fn).train(_DIGITS, 200)
  assert np.all(np.isfinite(trajectory)), trajectory[-5:]


def test_without_the_logvar_floor_a_mim_diverges_in_flax_s_vae_example():
  """What the floor prevents (issue 27: NaN by step 57 on MNIST)."""
  trajectory = _FlaxExampleVae(
      lambda *out: losses.a_mim_loss(*out, logvar_floor=None)).train(_DIGITS, 200)
  assert not np.all(np.isfinite(trajectory))


# ---------------------------------------------------------------------------------------------
# Must-shows: a reader beside a running trainer; SIGTERM / SIGINT then resume.

_TRAINER = """
import json, pathlib, signal, sys, time
import ml_collections
from cmim_jax import checkpointing, training
from experiments import cli

workdir, config_file, pace = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
config = ml_collections.ConfigDict(json.loads(pathlib.Path(config_file).read_text()))
original_run, original_manifest = training.FusedLoop.run, checkpointing.write_manifest

def paced_run(self, loop, num_steps):
  loop = original_run(self, loop, num_steps)
  step = int(loop.train.step)
  (workdir.parent / f"at_step_{step}").touch()
  if pace == "until_reader_done":  # Slow steps while the reader runs.
    if not (workdir.parent / "reader_done").exists():
      time.sleep(0.4)
  elif step == int(pace):  # Waits (up to 60 s) for the test's signal during this step.
    deadline = time.monotonic() + 60
    while signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL and time.monotonic() < deadline:
      time.sleep(0.02)  # (The first signal gives back the previous handlers.)
  return loop

def slow_manifest(step_dir):  # Widens the window of a complete step without its manifest.
  time.sleep(0.5)
  original_manifest(step_dir)

training.FusedLoop.run = paced_run
checkpointing.write_manifest = slow_manifest
def main(argv):
  del argv
  training.train_and_evaluate(config, workdir)

cli.run(main)
"""


def _start_trainer(config, tmp_path, pace: str) -> tuple[subprocess.Popen, pathlib.Path]:
  (tmp_path / "config.json").write_text(config.to_json())
  workdir = tmp_path / "run"
  log = open(tmp_path / "trainer.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
  child = subprocess.Popen([sys.executable, "-c", _TRAINER, str(workdir),
                            str(tmp_path / "config.json"), pace], cwd=REPO, stdout=log,
                           stderr=subprocess.STDOUT)
  log.close()
  return child, workdir


def _wait_for(path: pathlib.Path, child: subprocess.Popen, log: pathlib.Path) -> None:
  deadline = time.monotonic() + 240
  while not path.exists():
    assert child.poll() is None, log.read_text()[-3000:]
    assert time.monotonic() < deadline, f"{path} did not appear"
    time.sleep(0.05)


def _params(workdir, step):
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
  try:
    return checkpointer.restore_state(step=step)["params"]
  finally:
    checkpointer.close()


def test_embed_beside_a_running_trainer_reads_a_verified_step_and_changes_nothing(
    synthetic_mnist_dir, tmp_path):
  config = make_tiny_config(synthetic_mnist_dir)
  config.train.num_steps = 40
  config.train.log_every_steps = 40
  config.checkpoint.every_steps = 2
  config.checkpoint.max_to_keep = 40
  config.eval.at_end = False
  trainer, workdir = _start_trainer(config, tmp_path, "until_reader_done")
  _wait_for(workdir / "checkpoints" / "2" / checkpointing.MANIFEST, trainer,
            tmp_path / "trainer.log")
  reader = run_cli("experiments.embed", f"--workdir={workdir}", "--split=test",
                   f"--out_dir={tmp_path / 'embeddings'}")
  (tmp_path / "reader_done").touch()
  assert trainer.wait(timeout=240) == 0, (tmp_path / "trainer.log").read_text()[-3000:]
  assert reader.returncode == 0, reader.stderr[-3000:]
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == list(range(2, 41, 2))  # Every checkpoint the trainer wrote is in place ...
  for step in steps:  # ... and verifies.
    assert checkpointing.manifest_problem(workdir / "checkpoints" / str(step)) is None
  assert not (workdir / "checkpoints.damaged").exists()
  used = int(np.load(tmp_path / "embeddings" / "test.npz")["step"])
  assert used in steps and used < 40  # Read while training ran.


@pytest.mark.parametrize("signum, status", [
    (signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_a_signal_saves_and_stops_and_the_resumed_run_is_bit_identical(trained_run, tmp_path,
                                                                       caplog, signum, status):
  caplog.set_level("INFO")
  reference, config = trained_run
  trainer, workdir = _start_trainer(config, tmp_path, "4")
  _wait_for(tmp_path / "at_step_4", trainer, tmp_path / "trainer.log")
  trainer.send_signal(signum)
  assert trainer.wait(timeout=240) == status
  log = (tmp_path / "trainer.log").read_text()
  stopped = [line for line in log.splitlines() if line.startswith("stopped at step ")]
  assert stopped == ["stopped at step 4; resume with the same command"], log[-3000:]
  assert "Traceback" not in log
  assert checkpointing.manifest_problem(workdir / "checkpoints" / "4") is None  # Verified.

  summary = training.train_and_evaluate(config, workdir)
  assert "Resumed from the checkpoint of step 4" in caplog.text
  assert "damaged" not in caplog.text and "Skipping" not in caplog.text
  assert summary["step"] == 6
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(reference, 6))
