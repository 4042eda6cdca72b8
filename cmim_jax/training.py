"""Training: the train state, the jit-compiled sharded train step, and the loop.

`train_and_evaluate(config, workdir)` is the whole job behind `experiments.main`; tests and notebooks
call it directly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pathlib
import signal
import sys
import threading
import time
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import auto as tqdm_auto
from absl import logging
from flax.training import train_state as train_state_lib
from jax.sharding import Mesh

from cmim_jax import (checkpointing, config_validation, diagnostics, errors, files, metric_writers,
                      objectives, tasks)
from cmim_jax import workdir as workdir_lib
from cmim_jax import sharding as sharding_lib
from cmim_jax.data import batching, streaming
from cmim_jax.generation import report as generation_report

TrainState = train_state_lib.TrainState
TrainStep = Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]


class NonFiniteLossError(errors.CmimError, FloatingPointError):
  """The loss became NaN or infinite; the run stopped without saving the bad state."""


class _StopSignals:
  """While entered, SIGTERM and SIGINT only set `signum`: the loop finishes the dispatch in
  flight, saves and raises `errors.TrainingStopped`. The first signal restores the previous
  handlers, so a second one acts at once. Only in the main thread of a single-process job (the
  processes of a multi-process job would stop at different steps)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.signum = signum
    self.release()
    logging.warning("Received %s: finishing the step in flight and saving a checkpoint.",
                    signal.Signals(signum).name)

  def __enter__(self) -> "_StopSignals":
    if threading.current_thread() is threading.main_thread() and jax.process_count() == 1:
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def release(self) -> None:
    """Gives SIGTERM and SIGINT their previous handlers back."""
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def __exit__(self, *exc_info) -> None:
    self.release()


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


def _step_inputs(task: tasks.Task, method: objectives.Method, batch: dict, key: jax.Array,
                 step: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...], jax.Array]:
  """The model inputs x, the augmented views and the loss key of training step `step`."""
  preprocess_key, views_key, loss_key = jax.random.split(jax.random.fold_in(key, step), 3)
  return task.preprocess(batch, preprocess_key), task.views(batch, views_key,
                                                            method.num_views), loss_key


def make_diagnostics_step(model, method: objectives.Method, task: tasks.Task,
                          config: ml_collections.ConfigDict, mesh: Mesh):
  """Builds `diagnose(params, batch, key, step) -> metrics`, jitted over `mesh`: the contrastive
  diagnostics (`cmim_jax.diagnostics`) on the inputs, views and z of training step `step`."""
  def diagnose(params, batch: dict, key: jax.Array, step: jax.Array):
    x, views, loss_key = _step_inputs(task, method, batch, key, step)
    return diagnostics.method_diagnostics(model, method, params, x, loss_key, config.loss, views)

  replicated = sharding_lib.replicated(mesh)
  return jax.jit(diagnose, in_shardings=(replicated, sharding_lib.batch_sharded(mesh), replicated,
                                         replicated), out_shardings=replicated)


def _train_step_fn(model, method: objectives.Method, task: tasks.Task,
                   config: ml_collections.ConfigDict) -> TrainStep:
  """The pure `train_step(state, batch, key) -> (state, metrics)` (not jitted).

  The step's randomness is `key` folded with the step number, so it does not depend on the device
  count.
  """
  def train_step(state: TrainState, batch: dict, key: jax.Array):
    x, views, loss_key = _step_inputs(task, method, batch, key, state.step)

    def loss_fn(params):
      return method.loss_fn(model, params, x, loss_key, config.loss, views)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads), **terms)
    return state, metrics

  return train_step


def make_train_step(model, method: objectives.Method, task: tasks.Task,
                    config: ml_collections.ConfigDict, mesh: Mesh) -> TrainStep:
  """Builds `train_step(state, batch, key) -> (state, metrics)`, jitted over `mesh`.

  The state is replicated and donated; the batch is sharded on its leading axis.
  """
  replicated = sharding_lib.replicated(mesh)
  # Traced within the mesh: the contrastive terms then split their rows over it.
  return jax.jit(sharding_lib.within_mesh(_train_step_fn(model, method, task, config), mesh),
                 in_shardings=(replicated, sharding_lib.batch_sharded(mesh), replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def setup(config: ml_collections.ConfigDict, method: objectives.Method, task: tasks.Task,
          mesh: Mesh, init_key: jax.Array) -> tuple[Any, TrainState, TrainStep]:
  """The model `method` trains on `task`, its fresh replicated train state, and the jitted step."""
  model = method.build_model(task, config)
  state = create_train_state(model, make_optimizer(config.train), task.example_input, init_key,
                             mesh)
  return model, state, make_train_step(model, method, task, config, mesh)


class LoopState(NamedTuple):
  """What the fused loop carries from one dispatch to the next, all on the devices.

  Attributes:
    train: the train state.
    permutation: int32 [N], the batch order of the current epoch (see `batching.DeviceBatcher`);
      None in a `StreamLoop`, whose batches come from the host.
    totals: metric name -> scalar, the sum of each metric since the last `FusedLoop.take_means`.
  """
  train: TrainState
  permutation: jax.Array
  totals: dict[str, jax.Array]


def _multi_step(train_step: TrainStep, batcher: batching.DeviceBatcher, loop: LoopState,
                arrays: dict, key: jax.Array, num_steps: int) -> LoopState:
  """`num_steps` train steps, each gathering its batch on the devices and adding its metrics to
  the totals."""
  def one_step(loop: LoopState) -> LoopState:
    batch, permutation = batcher.batch_at(arrays, loop.permutation, loop.train.step)
    train, metrics = train_step(loop.train, batch, key)
    return LoopState(train, permutation, jax.tree.map(jnp.add, loop.totals, metrics))

  if num_steps == 1:
    return one_step(loop)
  return jax.lax.fori_loop(0, num_steps, lambda _, carry: one_step(carry), loop)


class _Loop:
  """What both loops share: the step's function, zero totals, and the means of the totals."""

  def __init__(self, model, method: objectives.Method, task: tasks.Task,
               config: ml_collections.ConfigDict, mesh: Mesh, key: jax.Array):
    self._train_step = sharding_lib.within_mesh(_train_step_fn(model, method, task, config), mesh)
    self._key = key
    self._replicated = sharding_lib.replicated(mesh)
    self._zeros_like = jax.jit(lambda tree: jax.tree.map(jnp.zeros_like, tree),
                               out_shardings=self._replicated)

  def _zero_totals(self, state: TrainState, batch_size: int,
                   rows: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Zero metric totals (replicated), shaped from the step on a batch of `batch_size` rows like
    those of `rows` (name -> array [n, ...], only shapes and dtypes read)."""
    batch = {name: jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), a.dtype)
             for name, a in rows.items()}
    metrics = jax.eval_shape(self._train_step, state, batch, self._key)[1]
    return jax.device_put(jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), metrics),
                          self._replicated)

  def take_means(self, loop: LoopState, count: int) -> tuple[LoopState, dict[str, float]]:
    """Each metric's mean over the last `count` steps (waits for them), and the state with the
    totals reset."""
    means = {k: float(v) / count for k, v in jax.device_get(loop.totals).items()}
    return loop._replace(totals=self._zeros_like(loop.totals)), means


class FusedLoop(_Loop):
  """Runs train steps on device-resident data, any number per jitted dispatch.

  A dispatch of k steps gives the same state and metric totals as k calls of `make_train_step`'s
  step on `batcher.batch(step)`: the batch of a step depends only on (seed, step), so a resumed
  run stays exact. The host copies nothing to the devices per step and reads the totals only when
  asked (`take_means`).
  """

  data_iterator = None  # No host pipeline: nothing to checkpoint beside the train state.

  def __init__(self, model, method: objectives.Method, task: tasks.Task,
               config: ml_collections.ConfigDict, mesh: Mesh, batcher: batching.DeviceBatcher,
               key: jax.Array):
    super().__init__(model, method, task, config, mesh, key)
    self._batcher = batcher
    self._multi_step = jax.jit(
        functools.partial(_multi_step, self._train_step, batcher), static_argnums=3,
        donate_argnums=0, in_shardings=(self._replicated,) * 3, out_shardings=self._replicated)

  def start(self, state: TrainState, step: int) -> LoopState:
    """The loop state at global step `step` (= `state.step`), with zero totals."""
    return LoopState(state, self._batcher.permutation(step),
                     self._zero_totals(state, self._batcher.batch_size, self._batcher.arrays))

  def run(self, loop: LoopState, num_steps: int) -> LoopState:
    """Runs `num_steps` steps in one dispatch (compiled once per distinct `num_steps`)."""
    return self._multi_step(loop, self._batcher.arrays, self._key, num_steps)

  def batch_of_step(self, step: int) -> dict[str, jax.Array]:
    """The batch step `step` trained on (for the diagnostics)."""
    return self._batcher.batch(step)


def _fed_step(train_step: TrainStep, loop: LoopState, batch: dict, key: jax.Array) -> LoopState:
  """One train step on a batch fed from the host, its metrics added to the totals."""
  train, metrics = train_step(loop.train, batch, key)
  return LoopState(train, loop.permutation, jax.tree.map(jnp.add, loop.totals, metrics))


class StreamLoop(_Loop):
  """Runs train steps on batches a Grain pipeline reads on the hosts (`streaming.StreamBatcher`),
  one jitted dispatch per step.

  Same interface as `FusedLoop`. The pipeline's iterator (`data_iterator`) is what the
  checkpoints save beside the state; restore it before `start` to resume (see
  `checkpointing.Checkpointer.restore_data_iterator`).
  """

  def __init__(self, model, method: objectives.Method, task: tasks.Task,
               config: ml_collections.ConfigDict, mesh: Mesh, batcher: streaming.StreamBatcher,
               key: jax.Array):
    super().__init__(model, method, task, config, mesh, key)
    self._batcher = batcher
    self._step = jax.jit(functools.partial(_fed_step, self._train_step), donate_argnums=0,
                         in_shardings=(self._replicated, batcher.sharding, self._replicated),
                         out_shardings=self._replicated)
    self.data_iterator = batcher.iterator()

  def start(self, state: TrainState, step: int) -> LoopState:
    """The loop state at global step `step` (= `state.step`, which `data_iterator` must be at),
    with zero totals."""
    del step  # The iterator holds the position.
    return LoopState(state, None, self._zero_totals(state, self._batcher.batch_size,
                                                    self._batcher.local_batch(0)))

  def run(self, loop: LoopState, num_steps: int) -> LoopState:
    """Runs the next `num_steps` steps, each on the next batch of the pipeline."""
    for _ in range(num_steps):
      loop = self._step(loop, self._batcher.to_global(next(self.data_iterator)), self._key)
    return loop

  def batch_of_step(self, step: int) -> dict[str, jax.Array]:
    """The batch step `step` trained on (read again, for the diagnostics)."""
    return self._batcher.batch(step)


def _steps_in_next_dispatch(step: int, config: ml_collections.ConfigDict) -> int:
  """Steps to run from `step`: `train.steps_per_dispatch`, cut at the next log or checkpoint
  boundary and at the end of training."""
  boundaries = [config.train.num_steps]
  for every in (config.train.log_every_steps, config.checkpoint.every_steps):
    boundaries.append((step // every + 1) * every)
  return min(_steps_per_dispatch(config), min(boundaries) - step)


def _steps_per_dispatch(config: ml_collections.ConfigDict) -> int:
  return config.train.get("steps_per_dispatch", 1)


def check_cadences(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError unless the log and checkpoint cadences are multiples of
  `train.steps_per_dispatch` (otherwise dispatches of many sizes would each compile anew)."""
  k = _steps_per_dispatch(config)
  if k < 1:
    raise errors.ConfigError(f"train.steps_per_dispatch={k} must be at least 1.")
  for name, every in (("train.log_every_steps", config.train.log_every_steps),
                      ("checkpoint.every_steps", config.checkpoint.every_steps)):
    if every % k:
      raise errors.ConfigError(f"{name}={every} must be a multiple of train.steps_per_dispatch={k} "
                               "(each dispatch runs that many steps); change either.")


def _is_main_process() -> bool:
  return jax.process_index() == 0


def _format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _has_progress_display() -> bool:
  """Whether a progress bar has somewhere to draw: a terminal, or a Jupyter kernel (where
  `tqdm.auto` draws a widget, or text without ipywidgets); not a log file."""
  return sys.stderr.isatty() or "ipykernel" in sys.modules


class Progress:
  """Reports training progress: a tqdm bar on a terminal or in a notebook, and one log line per
  logged interval (step, loss, examples/s, ETA) wherever the output goes."""

  def __init__(self, start_step: int, num_steps: int, batch_size: int, description: str):
    self._num_steps, self._batch_size = num_steps, batch_size
    self._bar = tqdm_auto.tqdm(total=num_steps, initial=start_step, desc=description,
                               disable=not (_has_progress_display() and _is_main_process()))

  def advance(self, num_steps: int) -> None:
    self._bar.update(num_steps)

  def log(self, step: int, means: dict[str, float]) -> None:
    """Logs the interval ending at `step` whose metric means (with examples_per_sec) are `means`."""
    self._bar.set_postfix(loss=f"{means['loss']:.3f}")
    seconds_left = (self._num_steps - step) * self._batch_size / means["examples_per_sec"]
    logging.info("step %d/%d  loss %.4f  %.0f examples/s  ETA %s", step, self._num_steps,
                 means["loss"], means["examples_per_sec"], _format_duration(seconds_left))

  def close(self) -> None:
    self._bar.close()


def _check_finite(loop: LoopState, checkpointer: checkpointing.Checkpointer, last_good_step: int,
                  step: int) -> None:
  """Raises NonFiniteLossError when the loss total since the last log is not finite."""
  if np.isfinite(float(loop.totals["loss"])):
    return
  checkpointer.wait_until_finished()
  saved = checkpointer.latest_step()
  kept = (f"The last good checkpoint (step {saved}) is intact in {checkpointer.directory}."
          if saved else "No checkpoint had been saved yet.")
  raise NonFiniteLossError(
      f"The loss became non-finite between steps {last_good_step} and {step}. {kept} "
      "Lower train.learning_rate or train.grad_clip_norm, or raise loss.temperature.")


def _write_pending_manifests(checkpointer: checkpointing.Checkpointer) -> None:
  """On an error in the loop: the manifest of a save that completes, so no finished checkpoint is
  left without one (best effort: the error being raised is the one to report)."""
  try:
    checkpointer.wait_until_finished()
  except Exception as error:  # pylint: disable=broad-except
    logging.warning("Could not finish the pending checkpoint save: %s", error)


def _evaluate(config: ml_collections.ConfigDict, task: tasks.Task, model, params,
              mesh: Mesh, workdir: pathlib.Path) -> dict[str, Any]:
  """The task's end-of-run metrics and the generative ones (`generation.report`: likelihood
  bound; pictures into `workdir`), or none when `eval.at_end` is False.

  In a multi-process job every process evaluates on its own devices (the evaluations read host
  arrays whole), with the same result; process 0 writes it.
  """
  if not config.eval.get("at_end", True):
    logging.info("Skipping the end-of-run evaluation (eval.at_end=False).")
    return {}
  start = time.perf_counter()
  if jax.process_count() > 1:
    mesh = sharding_lib.make_data_mesh(jax.local_devices())
    params = sharding_lib.local_copy(params, mesh)
  metrics = task.evaluate(model, params, mesh)
  metrics.update(generation_report.end_of_run(config, task, model, params, mesh, workdir))
  logging.info("Evaluation took %.1f s.", time.perf_counter() - start)
  return metrics


def _previous_diagnostics(summary_path: pathlib.Path, step: int) -> dict[str, float]:
  """The diagnostics block of an earlier summary of the same final `step`, or {}."""
  try:
    previous = json.loads(summary_path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return {}
  if not isinstance(previous, dict) or previous.get("step") != step:
    return {}
  diagnostics_block = previous.get("diagnostics")
  return diagnostics_block if isinstance(diagnostics_block, dict) else {}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       devices=None) -> dict[str, Any]:
  """Trains `config.loss.method` on `config.data.name`, checkpointing and logging into `workdir`.

  Resumes from the latest checkpoint in `workdir/checkpoints` when there is one. Returns the summary
  that is also written to `workdir/summary.json`. The config must match the one saved with that
  checkpoint but in `workdir_lib.MAY_CHANGE_ON_RESUME`. A second trainer on the same workdir gets
  a `workdir_lib.WorkdirBusyError`. SIGTERM or SIGINT ends the run with a verified checkpoint of
  the step reached and an `errors.TrainingStopped`.
  """
  # Mesh: one `data` axis over all devices. The config is checked before anything is written.
  mesh = sharding_lib.make_data_mesh(devices)
  config_validation.validate(config, mesh.devices.size)
  check_cadences(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  # One writer per workdir: process 0 holds the lock until it returns (or dies).
  lock = workdir_lib.WorkdirLock(workdir) if _is_main_process() else contextlib.nullcontext()
  with lock, _StopSignals() as stop:
    return _train_and_evaluate(config, workdir, mesh, stop)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path, mesh: Mesh,
                        stop: _StopSignals) -> dict[str, Any]:
  """`train_and_evaluate` once the config is checked and the workdir locked."""
  logging.info("Mesh: %d device(s) %s", mesh.devices.size, mesh.devices.tolist())

  # Input: the training set lives on the devices, batches gathered there ("device"); or each
  # process streams its rows of every batch from the host ("stream").
  phase_start = time.perf_counter()
  method = objectives.get_method(config.loss.method)
  task = tasks.build_task(config)
  config = task.save_assets(workdir, config)  # E.g. a vocabulary the saved config points at.
  streamed = config.data.get("pipeline", "device") == "stream"
  if streamed:
    batcher = streaming.StreamBatcher(
        task.train_source(), config.data.batch_size, mesh, config.seed, config.train.num_steps,
        config.data.get("reader_threads", 2), config.data.get("prefetch_batches", 4))
  else:
    batcher = batching.DeviceBatcher(task.train_arrays, config.data.batch_size, mesh,
                                     seed=config.seed)
  logging.info("Data loaded%s in %.1f s.", "" if streamed else " and placed on the devices",
               time.perf_counter() - phase_start)

  # Model, optimiser and state.
  phase_start = time.perf_counter()
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  model = method.build_model(task, config)
  state = create_train_state(model, make_optimizer(config.train), task.example_input, init_key,
                             mesh)
  logging.info("Parameters: %d (initialised in %.1f s)", sum(
      p.size for p in jax.tree.leaves(state.params)), time.perf_counter() - phase_start)

  # Checkpoints: resume from the latest one when present.
  checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", config.checkpoint.max_to_keep)
  start_step = checkpointer.latest_step() or 0
  if start_step:
    try:
      workdir_lib.check_resume_config(checkpointer.restore_config(start_step).to_dict(), config,
                                      checkpointer.directory / str(start_step))
    except errors.ConfigError:
      checkpointer.close()
      raise
  if start_step > config.train.num_steps:
    checkpointer.close()
    raise errors.ConfigError(
        f"train.num_steps={config.train.num_steps} is below the step of the latest checkpoint "
        f"({start_step}) in {checkpointer.directory}; pass --config.train.num_steps={start_step} "
        "(or more) to evaluate or continue that run, or use a new --workdir.")
  # Loop: k steps per dispatch, metrics logged and state checkpointed at their cadences.
  fused = (StreamLoop if streamed else FusedLoop)(model, method, task, config, mesh, batcher,
                                                  train_key)
  if start_step:
    state = checkpointer.restore_state(checkpointing.abstract_like(state), start_step)
    if fused.data_iterator is not None:
      checkpointer.restore_data_iterator(fused.data_iterator, start_step)
    logging.info("Resumed from the checkpoint of step %d.", start_step)
  loop = fused.start(state, start_step)
  # Diagnostics of the contrastive term, on the last step's batch at every log step.
  diagnose = make_diagnostics_step(model, method, task, config, mesh)
  last_diagnostics = {}
  writer = metric_writers.MetricWriter(workdir, start_step, enabled=_is_main_process())
  num_steps = config.train.num_steps
  progress = Progress(start_step, num_steps, config.data.batch_size, config.loss.method)
  step = last_good_step = start_step
  count, interval_start = 0, time.perf_counter()
  try:
    while step < num_steps:
      dispatch_steps = _steps_in_next_dispatch(step, config)
      dispatch_start = time.perf_counter()
      loop = fused.run(loop, dispatch_steps)
      if step == start_step:  # Compiling is synchronous, running is not.
        logging.info("Train step compiled in %.1f s.", time.perf_counter() - dispatch_start)
      step += dispatch_steps
      count += dispatch_steps
      progress.advance(dispatch_steps)
      if step % config.train.log_every_steps == 0 or step == num_steps:
        _check_finite(loop, checkpointer, last_good_step, step)
        loop, means = fused.take_means(loop, count)
        means["examples_per_sec"] = count * config.data.batch_size / (
            time.perf_counter() - interval_start)
        last_diagnostics = {k: float(v) for k, v in jax.device_get(
            diagnose(loop.train.params, fused.batch_of_step(step - 1), train_key,
                     step - 1)).items()}
        writer.write(step, {**means, **last_diagnostics})
        progress.log(step, means)
        last_good_step = step
        count, interval_start = 0, time.perf_counter()
      stop_signal = stop.signum  # Read once: a signal may arrive at any time.
      if step % config.checkpoint.every_steps == 0 or step == num_steps or stop_signal:
        _check_finite(loop, checkpointer, last_good_step, step)
        checkpointer.save(step, loop.train, config, fused.data_iterator)
      checkpointer.finish_completed_saves()  # The manifest as soon as its save is complete.
      if stop_signal:
        progress.close()
        checkpointer.close()  # Waits for the save and writes its manifest.
        writer.close()
        raise errors.TrainingStopped(step, stop_signal)
  except (Exception, KeyboardInterrupt) as error:
    if not isinstance(error, errors.TrainingStopped):
      _write_pending_manifests(checkpointer)
    raise
  stop.release()  # From here on (evaluation) a signal acts as usual.
  progress.close()
  checkpointer.wait_until_finished()
  logging.info("Training done.")
  checkpointer.close()
  writer.close()

  # Evaluation on the test set.
  summary = {"step": num_steps, "method": config.loss.method, "data_source": task.source,
             **_evaluate(config, task, model, loop.train.params, mesh, workdir)}
  if not last_diagnostics:  # Resumed at the end: those of the run that trained the last steps.
    last_diagnostics = _previous_diagnostics(workdir / "summary.json", num_steps)
  if last_diagnostics:  # At the last log step.
    summary["diagnostics"] = last_diagnostics
  if task.input_rows:
    summary["input_rows"] = task.input_rows
  if _is_main_process():
    files.write_json_atomic(workdir / "summary.json", summary)
  logging.info("Summary: %s", json.dumps(summary))
  return summary
