"""Training: the train state, the jit-compiled sharded train step, and the loop.

`train_and_evaluate(config, workdir)` is the whole job behind `experiments.main`; tests and notebooks
call it directly.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from flax.training import train_state as train_state_lib
from jax.sharding import Mesh

from cmim_jax import checkpointing, metric_writers, objectives, tasks
from cmim_jax import sharding as sharding_lib
from cmim_jax.data import batching

TrainState = train_state_lib.TrainState
TrainStep = Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the run stopped without saving the bad state."""


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the configured learning rate, after global-norm gradient clipping."""
  return optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm),
                     optax.adam(train_config.learning_rate))


def create_train_state(model, tx, example_input: np.ndarray, key: jax.Array,
                       mesh: Mesh) -> TrainState:
  """Initialises parameters and optimiser state directly in their (replicated) shardings."""
  def init(key):
    init_key, sample_key = jax.random.split(key)
    params = model.init(init_key, jnp.asarray(example_input), sample_key)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  return jax.jit(init, out_shardings=sharding_lib.replicated(mesh))(key)


def make_train_step(model, method: objectives.Method, task: tasks.Task,
                    config: ml_collections.ConfigDict, mesh: Mesh) -> TrainStep:
  """Builds `train_step(state, batch, key) -> (state, metrics)`, jitted over `mesh`.

  The state is replicated and donated; the batch is sharded on its leading axis. The step's
  randomness is `key` folded with the step number, so it does not depend on the device count.
  """
  def train_step(state: TrainState, batch: dict, key: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    preprocess_key, views_key, loss_key = jax.random.split(step_key, 3)
    x = task.preprocess(batch, preprocess_key)
    views = task.views(batch, views_key, method.num_views)

    def loss_fn(params):
      return method.loss_fn(model, params, x, loss_key, config.loss, views)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads), **terms)
    return state, metrics

  replicated = sharding_lib.replicated(mesh)
  return jax.jit(train_step,
                 in_shardings=(replicated, sharding_lib.batch_sharded(mesh), replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def setup(config: ml_collections.ConfigDict, method: objectives.Method, task: tasks.Task,
          mesh: Mesh, init_key: jax.Array) -> tuple[Any, TrainState, TrainStep]:
  """The model `method` trains on `task`, its fresh replicated train state, and the jitted step."""
  model = method.build_model(task, config)
  state = create_train_state(model, make_optimizer(config.train), task.example_input, init_key,
                             mesh)
  return model, state, make_train_step(model, method, task, config, mesh)


@jax.jit
def _accumulate(totals: dict, metrics: dict) -> dict:
  return jax.tree.map(jnp.add, totals, metrics)


def _is_main_process() -> bool:
  return jax.process_index() == 0


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       devices=None) -> dict[str, Any]:
  """Trains `config.loss.method` on `config.data.name`, checkpointing and logging into `workdir`.

  Resumes from the latest checkpoint in `workdir/checkpoints` when there is one. Returns the summary
  that is also written to `workdir/summary.json`.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  # Mesh: one `data` axis over all devices.
  mesh = sharding_lib.make_data_mesh(devices)
  logging.info("Mesh: %d device(s) %s", mesh.devices.size, mesh.devices.tolist())
  sharding_lib.check_batch_size(config.data.batch_size, mesh)

  # Input: the training set lives on the devices; batches are gathered there.
  method = objectives.get_method(config.loss.method)
  task = tasks.build_task(config)
  config = task.save_assets(workdir, config)  # E.g. a vocabulary the saved config points at.
  batcher = batching.DeviceBatcher(task.train_arrays, config.data.batch_size, mesh,
                                   seed=config.seed)

  # Model, optimiser and state.
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  model, state, train_step = setup(config, method, task, mesh, init_key)
  logging.info("Parameters: %d", sum(p.size for p in jax.tree.leaves(state.params)))

  # Checkpoints: resume from the latest one when present.
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", config.checkpoint.max_to_keep)
  start_step = checkpointer.latest_step() or 0
  if start_step:
    state = checkpointer.restore_state(checkpointing.abstract_like(state), start_step)
    logging.info("Resumed from the checkpoint of step %d.", start_step)

  writer = metric_writers.MetricWriter(workdir, start_step, enabled=_is_main_process())
  num_steps = config.train.num_steps
  totals, count, interval_start = None, 0, time.perf_counter()
  last_good_step = start_step

  def check_finite(step):
    if totals is not None and not np.isfinite(float(totals["loss"])):
      checkpointer.wait_until_finished()
      raise NonFiniteLossError(
          f"The loss became non-finite between steps {last_good_step} and {step}. The last good "
          f"checkpoint (step {checkpointer.latest_step()}) is intact in {checkpointer.directory}. "
          "Lower train.learning_rate or train.grad_clip_norm, or raise loss.temperature.")

  progress = tqdm.tqdm(total=num_steps, initial=start_step, desc=config.loss.method,
                       disable=not (sys.stderr.isatty() and _is_main_process()))
  for step in range(start_step, num_steps):
    state, metrics = train_step(state, batcher.batch(step), train_key)
    totals = metrics if totals is None else _accumulate(totals, metrics)
    count += 1
    done = step + 1
    progress.update(1)
    if done % config.train.log_every_steps == 0 or done == num_steps:
      check_finite(done)
      means = {k: float(v) / count for k, v in jax.device_get(totals).items()}
      means["examples_per_sec"] = count * config.data.batch_size / (
          time.perf_counter() - interval_start)
      writer.write(done, means)
      progress.set_postfix(loss=f"{means['loss']:.3f}")
      last_good_step = done
      totals, count, interval_start = None, 0, time.perf_counter()
    if done % config.checkpoint.every_steps == 0 or done == num_steps:
      check_finite(done)
      checkpointer.save(done, state, config)
  progress.close()
  checkpointer.wait_until_finished()
  checkpointer.close()
  writer.close()

  # Evaluation on the test set.
  summary = {"step": num_steps, "method": config.loss.method, "data_source": task.source,
             **task.evaluate(model, state.params, mesh)}
  if _is_main_process():
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  logging.info("Summary: %s", json.dumps(summary))
  return summary
