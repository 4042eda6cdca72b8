"""The sharded train step, exact resume, the non-finite guard, and the command-line entry point."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from cmim_jax import checkpointing, objectives, sharding, tasks, training
from cmim_jax.data import batching
from cmim_jax.embedding import compute as embedding_compute
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


def test_fused_loop_equals_single_steps_on_gathered_batches(tiny_config):
  tiny_config.data.batch_size = 128  # 4 steps per epoch: 6 steps cross an epoch boundary.
  mesh = sharding.make_data_mesh()
  method = objectives.get_method(tiny_config.loss.method)
  task = tasks.build_task(tiny_config)
  batcher = batching.DeviceBatcher(task.train_arrays, 128, mesh, seed=0)
  model, initial, step = training.setup(tiny_config, method, task, mesh, jax.random.key(0))
  key = jax.random.key(1)
  state, totals = jax.tree.map(jax.numpy.copy, initial), None
  for i in range(6):
    state, metrics = step(state, batcher.batch(i), key)
    if i >= 2:  # Totals over steps 2..5, after a start at step 2 (as on resume).
      totals = metrics if totals is None else jax.tree.map(np.add, totals, metrics)
  fused = training.FusedLoop(model, method, task, tiny_config, mesh, batcher, key)
  for sizes in ((1, 1, 1, 1), (2, 2), (3, 1), (4,)):
    loop = fused.start(jax.tree.map(jax.numpy.copy, initial), 0)
    loop = fused.run(fused.run(loop, 1), 1)
    loop, _ = fused.take_means(loop, 2)
    for size in sizes:
      loop = fused.run(loop, size)
    loop, means = fused.take_means(loop, 4)
    assert int(loop.train.step) == 6
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(loop.train.params),
                 jax.device_get(state.params))
    for name, total in totals.items():
      np.testing.assert_allclose(means[name], float(total) / 4, rtol=1e-6, err_msg=name)


def test_steps_per_dispatch_gives_the_same_run_and_eval_is_configurable(tiny_config, tmp_path,
                                                                        monkeypatch):
  embedded_sizes = []
  embed_inputs = embedding_compute.embed_inputs
  monkeypatch.setattr(embedding_compute, "embed_inputs", lambda model, params, inputs, *args: (
      embedded_sizes.append(len(inputs)) or embed_inputs(model, params, inputs, *args)))
  tiny_config.eval.max_examples = 40
  one = training.train_and_evaluate(tiny_config, tmp_path / "one")
  assert embedded_sizes == [40, 40] and "knn5_accuracy_mean" in one

  fused = tiny_config.copy_and_resolve_references()
  fused.train.steps_per_dispatch = 2
  fused.checkpoint.every_steps = 4
  fused.train.num_steps = 7  # The last dispatch runs one step.
  fused.eval.at_end = False
  summary = training.train_and_evaluate(fused, tmp_path / "two")
  assert set(summary) == {"step", "method", "data_source", "diagnostics"}
  assert embedded_sizes == [40, 40]

  tiny_config.train.num_steps = 7
  tiny_config.checkpoint.every_steps = 4
  training.train_and_evaluate(tiny_config, tmp_path / "one")  # Resumes from step 6.
  _, params_one = _final_params(tmp_path / "one")
  _, params_two = _final_params(tmp_path / "two")
  jax.tree.map(np.testing.assert_array_equal, params_one, params_two)
  records = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().split(
      "\n") if line] for run in ("one", "two")]
  for record in records:
    for r in record:
      del r["examples_per_sec"]
  assert [r["step"] for r in records[1]] == [2, 4, 6, 7]
  assert records[0] == records[1]


def test_cadences_must_be_multiples_of_steps_per_dispatch(tiny_config, tmp_path):
  tiny_config.train.steps_per_dispatch = 4
  with pytest.raises(ValueError, match=r"train.log_every_steps=2 must be a multiple of "
                                       r"train.steps_per_dispatch=4"):
    training.train_and_evaluate(tiny_config, tmp_path)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
  tiny_config.train.num_steps = 3
  training.train_and_evaluate(tiny_config, tmp_path)
  good_step, good_params = _final_params(tmp_path)

  diverging = tiny_config.copy_and_resolve_references()
  diverging.train.num_steps = 9
  diverging.train.learning_rate = 1e30  # Finite (a NaN is refused up front), yet diverges.
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
  with pytest.raises(ValueError, match=r"loss.method='simclr': must be one of \["):
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
  log_path = tmp_path / "log.txt"
  with open(log_path, "w", encoding="utf-8") as log:  # Not a terminal: no progress bar.
    result = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            timeout=300, env={**os.environ, "CMIM_JAX_COMPILATION_CACHE": str(
                                tmp_path / "jax_cache"),
                                "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  output = log_path.read_text(encoding="utf-8")
  assert result.returncode == 0, output[-3000:]
  progress = re.findall(r"step (\d+)/4  loss ([\d.]+)  \d+ examples/s  ETA \d+m\d\ds", output)
  assert [int(step) for step, _ in progress] == [2, 4], output[-3000:]
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [2, 4]
  assert [float(loss) for _, loss in progress] == pytest.approx([r["loss"] for r in records],
                                                                abs=1e-4)
  assert {"loss", "reconstruction", "examples_per_sec", "grad_norm"} <= set(records[0])
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [
      "2", "4"]
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["method"] == "mim" and summary["step"] == 4
  assert "knn5_accuracy_mean" in summary and "test_reconstruction_loss" in summary
  assert "Summary:" in output
  assert output.index("Done: mim trained for 4 steps") > output.index("Summary:")  # Human summary.
  own_files = {p.name for d in ("cmim_jax", "experiments") for p in (REPO_ROOT / d).rglob("*.py")}
  info_sources = set(re.findall(r"(?m)^I\d{4} [\d:.]+ +\d+ (\S+):\d+\]", output))
  assert info_sources and info_sources <= own_files, info_sources - own_files  # No Orbax INFO.
  assert f"Compilation cache: {tmp_path / 'jax_cache'}" in output
  assert len(list((tmp_path / "jax_cache").iterdir())) > 3  # The step, init, evaluation, ...


def test_configs_docstring_command_is_valid():
  config = mnist_config.get_config()
  assert config.loss.method == "cmim" and config.data.name == "mnist"
  assert mnist_config.get_config("quick").train.num_steps < config.train.num_steps
  with pytest.raises(ValueError, match="Unknown config variant"):
    mnist_config.get_config("huge")
