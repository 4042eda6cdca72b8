"""The sharded train step, exact resume, the non-finite guard, and the command-line entry point."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from cmim_jax import checkpointing, objectives, sharding, tasks, training
from experiments.configs import mnist as mnist_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _one_step_params(config, devices, num_steps=2):
  mesh = sharding.make_data_mesh(devices)
  task = tasks.build_task(config)
  _, state, step = training.setup(config, objectives.get_method(config.loss.method), task, mesh,
                                  jax.random.key(0))
  batch = {"image": task.train_arrays["image"][:config.data.batch_size]}
  batch = jax.device_put(batch, sharding.batch_sharded(mesh))
  for _ in range(num_steps):
    state, metrics = step(state, batch, jax.random.key(1))
  return jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.parametrize("method", ["cmim", "cmim_sum", "mim", "vae", "cvae"])
def test_step_on_8_devices_equals_step_on_1_device(tiny_config, method):
  assert jax.device_count() == 8
  tiny_config.loss.method = method
  params_8, metrics_8 = _one_step_params(tiny_config, jax.devices())
  params_1, metrics_1 = _one_step_params(tiny_config, jax.devices()[:1])
  for key in metrics_1:
    np.testing.assert_allclose(metrics_8[key], metrics_1[key], rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               params_8, params_1)


def _final_params(workdir):
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints")
  step = checkpointer.latest_step()
  state = checkpointer.restore_state(step=step)
  checkpointer.close()
  return step, state["params"]


def test_interrupted_then_resumed_run_equals_uninterrupted_run(tiny_config, tmp_path):
  tiny_config.train.num_steps = 6
  training.train_and_evaluate(tiny_config, tmp_path / "straight")

  interrupted = tiny_config.copy_and_resolve_references()
  interrupted.train.num_steps = 3  # Stops after the checkpoint of step 3 ...
  training.train_and_evaluate(interrupted, tmp_path / "resumed")
  summary = training.train_and_evaluate(tiny_config, tmp_path / "resumed")  # ... and resumes.

  step_a, params_a = _final_params(tmp_path / "straight")
  step_b, params_b = _final_params(tmp_path / "resumed")
  assert step_a == step_b == 6
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
  assert summary == json.loads((tmp_path / "straight" / "summary.json").read_text())
  steps = [json.loads(line)["step"] for line in
           (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
  assert steps == [2, 3, 4, 6]  # Logged every 2 steps and at the end of each run, no duplicates.


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
  tiny_config.train.num_steps = 3
  training.train_and_evaluate(tiny_config, tmp_path)
  good_step, good_params = _final_params(tmp_path)

  diverging = tiny_config.copy_and_resolve_references()
  diverging.train.num_steps = 9
  diverging.train.learning_rate = float("nan")
  with pytest.raises(training.NonFiniteLossError, match=r"last good checkpoint \(step 3\)"):
    training.train_and_evaluate(diverging, tmp_path)

  step, params = _final_params(tmp_path)
  assert step == good_step == 3
  jax.tree.map(np.testing.assert_array_equal, params, good_params)


def test_batch_size_not_divisible_by_device_count_fails_clearly(tiny_config, tmp_path):
  tiny_config.data.batch_size = 12
  with pytest.raises(ValueError, match="multiple of the device count"):
    training.train_and_evaluate(tiny_config, tmp_path)


def test_unknown_method_lists_valid_ones(tiny_config, tmp_path):
  tiny_config.loss.method = "simclr"
  with pytest.raises(ValueError, match=r"Unknown loss.method 'simclr'; choose one of \["):
    training.train_and_evaluate(tiny_config, tmp_path)


def test_conv_architecture_trains(tiny_config, tmp_path):
  tiny_config.model.encoder = "conv"
  tiny_config.model.conv_features = (8, 8)
  tiny_config.model.conv_dense_size = 32
  summary = training.train_and_evaluate(tiny_config, tmp_path)
  assert np.isfinite(summary["test_reconstruction_loss"])


def test_cli_writes_metrics_tensorboard_checkpoints_and_summary(synthetic_mnist_dir, tmp_path):
  workdir = tmp_path / "run"
  command = [
      sys.executable, "-m", "experiments.main",
      "--config=experiments/configs/mnist.py:quick", f"--workdir={workdir}",
      f"--config.data.data_dir={synthetic_mnist_dir}", "--config.data.batch_size=32",
      "--config.model.hidden_sizes=(32,)", "--config.train.num_steps=4",
      "--config.train.log_every_steps=2", "--config.checkpoint.every_steps=2",
      "--config.loss.method=mim"]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [2, 4]
  assert {"loss", "reconstruction", "examples_per_sec", "grad_norm"} <= set(records[0])
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
      "2", "4"]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["method"] == "mim" and summary["step"] == 4
  assert "knn5_accuracy_mean" in summary and "test_reconstruction_loss" in summary
  assert "Summary:" in result.stderr


def test_configs_docstring_command_is_valid():
  config = mnist_config.get_config()
  assert config.loss.method == "cmim" and config.data.name == "mnist"
  assert mnist_config.get_config("quick").train.num_steps < config.train.num_steps
  with pytest.raises(ValueError, match="Unknown config variant"):
    mnist_config.get_config("huge")
