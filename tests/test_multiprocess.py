"""A 2-process job on the CPU (gloo collectives, 2 simulated devices each) through the entry point:
it equals a 1-process run on 4 devices, writes checkpoints, metrics and summary once, and resumes.

"Equals" is up to float rounding: both runs see the same batches and split them over 4 devices
alike, but gloo's all-reduce adds the 4 gradient shards in another order than the in-process one.
That moves most parameters by about 1e-6 after a few Adam steps, and a parameter whose gradient
is near 0 by up to a few percent of the learning rate (1e-3): Adam divides the gradient by its own
running size, so rounding in a tiny gradient becomes a step of ordinary size.
"""

import functools
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from cmim_jax import checkpointing, distributed, training
from tests.conftest import make_tiny_config, xla_flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _overrides(config) -> list[str]:
  """The command-line flags that give `config` (a `make_tiny_config` config) to experiments.main."""
  return [f"--config.data.data_dir={config.data.data_dir}", "--config.data.allow_fallback=False",
          f"--config.data.batch_size={config.data.batch_size}",
          f"--config.data.pipeline={config.data.pipeline}",
          f"--config.model.hidden_sizes={tuple(config.model.hidden_sizes)}",
          f"--config.model.latent_dim={config.model.latent_dim}",
          f"--config.train.num_steps={config.train.num_steps}",
          f"--config.train.log_every_steps={config.train.log_every_steps}",
          f"--config.checkpoint.every_steps={config.checkpoint.every_steps}",
          f"--config.eval.batch_size={config.eval.batch_size}",
          f"--config.eval.max_examples={config.eval.max_examples}",
          f"--config.eval.at_end={config.eval.at_end}",
          f"--config.eval.likelihood_samples={config.eval.likelihood_samples}",
          f"--config.eval.pictures={config.eval.pictures}",
          f"--config.eval.frechet={config.eval.frechet}",
          "--config.distributed=True", "--config.compilation_cache_dir=off"]


def _run_two_processes(config, workdir: pathlib.Path, logs: pathlib.Path) -> None:
  """Runs experiments.main as processes 0 and 1 of one job; both must exit 0 within the timeout."""
  port = _free_port()
  command = [sys.executable, "-m", "experiments.main", "--config=experiments/configs/mnist.py",
             f"--workdir={workdir}", *_overrides(config)]
  processes = []
  try:
    for process_id in range(2):
      env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
             "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(process_id),
             "XLA_FLAGS": xla_flags(2)}
      log = open(logs / f"process_{process_id}.log", "w",  # pylint: disable=consider-using-with
                 encoding="utf-8")
      processes.append((subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT), log))
    for process, _ in processes:
      process.wait(timeout=TIMEOUT_S)
  finally:
    for process, log in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
      log.close()
  for process_id, (process, _) in enumerate(processes):
    output = (logs / f"process_{process_id}.log").read_text(encoding="utf-8")
    assert process.returncode == 0, f"process {process_id}:\n{output[-3000:]}"


def _final_state(workdir: pathlib.Path, like=None):
  """The latest step and its state, onto one device here (in the structure of `like`, which a
  checkpoint of another job's devices needs)."""
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
  step = checkpointer.latest_step()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = None if like is None else jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), like)
  state = checkpointer.restore_state(abstract, step)
  checkpointer.close()
  return step, state


def _records(workdir: pathlib.Path) -> list[dict]:
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  for record in records:
    del record["examples_per_sec"]
  return records


# "device" passes too (the data set replicated on every process; 47 s on a 2-core machine): add it
# here when changing how multi-process runs place data.
@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["stream"])
def test_two_processes_equal_one_process_on_4_devices_and_resume(synthetic_mnist_dir, tmp_path,
                                                                 pipeline):
  config = make_tiny_config(synthetic_mnist_dir)
  config.data.pipeline = pipeline
  config.eval.max_examples = 64
  reference = training.train_and_evaluate(config, tmp_path / "one", devices=jax.devices()[:4])

  interrupted = config.copy_and_resolve_references()
  interrupted.train.num_steps = 3  # Stops after the checkpoint of step 3, then resumes from it.
  interrupted.eval.at_end = False
  _run_two_processes(interrupted, tmp_path / "two", tmp_path)
  _run_two_processes(config, tmp_path / "two", tmp_path)

  step_one, state_one = _final_state(tmp_path / "one")
  step_two, state_two = _final_state(tmp_path / "two", like=state_one)
  assert step_one == step_two == 6
  close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4)
  jax.tree.map(close, state_one, state_two)
  records_one, records_two = _records(tmp_path / "one"), _records(tmp_path / "two")
  assert [r["step"] for r in records_two] == [2, 3, 4, 6]  # One writer, no repeats at the resume.
  for index_one, index_two in ((0, 0), (2, 3)):  # Steps 2 and 6 average the same steps in both.
    assert records_two[index_two] == pytest.approx(records_one[index_one], rel=1e-4, abs=1e-5)
  summary = json.loads((tmp_path / "two" / "summary.json").read_text())
  assert summary.keys() == reference.keys()
  for key, value in reference.items():
    assert summary[key] == (value if isinstance(value, str) else
                            pytest.approx(value, rel=1e-4, abs=1e-5)), key
  checkpoints = tmp_path / "two" / "checkpoints"
  assert sorted(p.name for p in checkpoints.iterdir()) == ["3", "6"]  # No leftovers.
  for step in ("3", "6"):
    assert checkpointing.manifest_problem(checkpoints / step) is None
    if pipeline == "stream":  # Each process saved where its iterator stands.
      assert sorted(p.name for p in (checkpoints / step / "data").glob("*.json")) == [
          "process_0-of-2.json", "process_1-of-2.json"]
  assert len(list((tmp_path / "two" / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_launch_arguments_come_from_jax_or_torchrun_variables():
  assert distributed.launch_arguments({}) == {}  # JAX's own detection (SLURM, MPI, TPU).
  assert distributed.launch_arguments({
      "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
      "JAX_PROCESS_ID": "3", "MASTER_ADDR": "ignored", "RANK": "0"}) == {
          "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  assert distributed.launch_arguments({"MASTER_ADDR": "node0", "WORLD_SIZE": "2",
                                       "RANK": "1"}) == {
      "coordinator_address": "node0:29500", "num_processes": 2, "process_id": 1}
