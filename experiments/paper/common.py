"""Orchestration shared by the paper's experiments: run, resume, embed, probe, record.

Every run is an ordinary `experiments.main` run (same `train_and_evaluate`) in its own workdir
under one output folder. A run whose `summary.json` exists is done and is not repeated when it was
made from the same inputs: its config and the SHA-256 of the files of its data folder (recorded in
`run_inputs.json`; `reusable`). When they differ, the log says which, the old run is moved aside
to `<workdir>.replaced-<n>` (never deleted) and the run is trained again; `--reuse=strict` refuses
instead. An interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from cmim_jax import embedding
from cmim_jax import errors, files
from cmim_jax import tasks
from cmim_jax import checkpointing
from cmim_jax import training
from cmim_jax import workdir as workdir_lib
from cmim_jax.embedding import files as embedding_files
from cmim_jax.generation import report as generative_report
from cmim_jax.probes import controls, evaluate, linear, workflows
from cmim_jax.tasks import images
from experiments.configs import mnist as mnist_config
from experiments.paper import stats


def machine_description() -> str:
  """E.g. 'CPU x86_64, 2 cores (jax 0.10.2, 1 cpu device)' or the GPU's name."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    import os  # pylint: disable=g-import-not-at-top
    return (f"CPU {platform.machine()}, {os.cpu_count()} cores "
            f"(jax {jax.__version__}, {jax.device_count()} cpu device(s))")
  return f"{jax.device_count()} x {device.device_kind} (jax {jax.__version__})"


def devices(num_devices: int | None) -> list[jax.Device] | None:
  """The first `num_devices` devices (None = all, the default of the training loop)."""
  if num_devices is None:
    return None
  if not 1 <= num_devices <= jax.device_count():
    raise errors.ConfigError(f"num_devices={num_devices} but {jax.device_count()} device(s) are "
                             "present.")
  return jax.devices()[:num_devices]


REUSE_MODES = ("rerun", "strict")
_REUSE = flags.DEFINE_enum(
    "reuse", "rerun", REUSE_MODES, "A finished run whose inputs (config, data files) differ from "
    "this command's: 'rerun' moves it aside to <workdir>.replaced-<n> and trains again; 'strict' "
    "refuses, naming the differences.")
RUN_INPUTS = "run_inputs.json"
# Fields that do not change a run's result, or that training itself fills in.
_IGNORED_FIELDS = ("compilation_cache_dir", "data.vocab_path")
_HASHED_FILE_LIMIT = 1 << 28  # Larger data files are fingerprinted by size and time, not hashed.


@functools.lru_cache(maxsize=None)
def _file_fingerprint(path: str, size: int, mtime_ns: int) -> str:
  if size > _HASHED_FILE_LIMIT:
    return f"size {size}, modified {mtime_ns}"
  digest = hashlib.sha256()
  with open(path, "rb") as file:
    for block in iter(lambda: file.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def data_files(data_config: ml_collections.ConfigDict) -> dict[str, str]:
  """Path -> SHA-256 of the files a run's data come from: those directly in `data.data_dir`, and
  `data.csv_path` / `data.corpus_path` (files over 256 MiB by size and time)."""
  paths = []
  folder = data_config.get("data_dir")
  if folder and pathlib.Path(folder).is_dir():
    paths += sorted(p for p in pathlib.Path(folder).iterdir() if p.is_file())
  paths += [pathlib.Path(data_config[key]) for key in ("csv_path", "corpus_path")
            if data_config.get(key) and pathlib.Path(data_config[key]).is_file()]
  return {str(p): _file_fingerprint(str(p), p.stat().st_size, p.stat().st_mtime_ns)
          for p in paths}


def run_inputs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a run's result depends on: {"config": its fields, "data_files": `data_files`}."""
  return {"config": json.loads(config.to_json_best_effort()),
          "data_files": data_files(config.data)}


def input_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """'field: old -> new' for each config field and data file (see `run_inputs`) that differs;
  a run recorded without data files (`old` lacks them) is compared on its config alone."""
  old_config, new_config = workdir_lib.flatten(old["config"]), workdir_lib.flatten(new["config"])
  absent = "(absent)"
  differences = [f"{key}: {old_config.get(key, absent)!r} -> {new_config.get(key, absent)!r}"
                 for key in sorted(set(old_config) | set(new_config))
                 if key not in _IGNORED_FIELDS and old_config.get(key) != new_config.get(key)]
  if "data_files" in old:
    old_files, new_files = old["data_files"], new["data_files"]
    shown = lambda files, path: f"sha256 {files[path][:12]}" if path in files else "absent"
    differences += [f"data file {path}: {shown(old_files, path)} -> {shown(new_files, path)}"
                    for path in sorted(set(old_files) | set(new_files))
                    if old_files.get(path) != new_files.get(path)]
  return differences


def _recorded_inputs(workdir: pathlib.Path) -> dict[str, Any] | None:
  """The run's run_inputs.json or, for a run finished before it was written, the config saved
  with its latest checkpoint (without data files); None when neither is readable."""
  try:
    return json.loads((workdir / RUN_INPUTS).read_text())
  except (OSError, ValueError):
    pass
  try:
    checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", read_only=True)
    try:
      return {"config": json.loads(
          checkpointer.restore_config(checkpointer.latest_step()).to_json_best_effort())}
    finally:
      checkpointer.close()
  except Exception as error:  # pylint: disable=broad-except  (Orbax raises many types)
    logging.warning("Cannot read the inputs of %s (%s).", workdir, error)
    return None


def _reuse_mode() -> str:
  return _REUSE.value if flags.FLAGS.is_parsed() else "rerun"


def reusable(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> bool:
  """Whether `workdir` holds a finished run of `config` on the same data (`run_inputs`).

  A finished run with other inputs is moved aside to `<workdir>.replaced-<n>` (the log names the
  differences) and False returned, or with `--reuse=strict` refused with a ConfigError.
  """
  if not (workdir / "summary.json").exists():
    return False
  recorded = _recorded_inputs(workdir)
  if recorded is None:
    logging.warning("Reusing %s without checking its inputs.", workdir)
    return True
  differences = input_differences(recorded, run_inputs(config))
  if not differences:
    return True
  if _reuse_mode() == "strict":
    raise errors.ConfigError(
        f"{workdir} holds a finished run of other inputs ({'; '.join(differences)}); pass "
        "another --out, or --reuse=rerun to move it aside and train again.")
  number = 1
  while workdir.with_name(f"{workdir.name}.replaced-{number}").exists():
    number += 1
  aside = workdir.rename(workdir.with_name(f"{workdir.name}.replaced-{number}"))
  logging.warning("%s was made from other inputs (%s); moved it to %s and training again.",
                  workdir, "; ".join(differences), aside)
  return False


def run_or_load(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                num_devices: int | None = None) -> dict[str, Any]:
  """Trains `config` without the generative end-of-run evaluation (the paper's tables score
  representations; experiments.likelihood and experiments.generate give the generative metrics)
  in `workdir` unless it holds a finished run of the same inputs (`reusable`); returns the
  summary + wall time.

  `num_devices` limits the mesh to the first devices (e.g. 1, so any batch size divides).
  """
  config = generative_report.without_generative_eval(config)
  summary_path = workdir / "summary.json"
  if reusable(config, workdir):
    logging.info("Done already: %s", workdir)
    return json.loads(summary_path.read_text())
  inputs = run_inputs(config)
  start = time.perf_counter()
  logging.info("Training %s (%s, %d steps) ...", workdir, config.loss.method,
               config.train.num_steps)
  summary = training.train_and_evaluate(config, workdir, devices(num_devices))
  summary["wall_time_s"] = round(time.perf_counter() - start, 2)
  files.write_json_atomic(summary_path, summary)
  files.write_json_atomic(workdir / RUN_INPUTS, inputs)
  logging.info("Trained %s in %.0f s.", workdir, summary["wall_time_s"])
  return summary


def run_all(runs: Sequence[tuple[ml_collections.ConfigDict, pathlib.Path]], processes: int,
            num_devices: int | None = None) -> list[dict[str, Any]]:
  """Trains every (config, workdir) not done yet; returns their summaries in order.

  processes > 1 runs them in that many parallel child processes (`run_in_processes`), else here.
  """
  runs = [(generative_report.without_generative_eval(config), workdir) for config, workdir in runs]
  done = sum(reusable(config, workdir) for config, workdir in runs)  # Moves stale runs aside.
  logging.info("Stage: training %d run(s), %d of them done already.", len(runs), done)
  if processes > 1:
    run_in_processes(runs, processes, num_devices)
  return [run_or_load(config, workdir, num_devices) for config, workdir in runs]


def run_in_processes(runs: Sequence[tuple[ml_collections.ConfigDict, pathlib.Path]],
                     processes: int, num_devices: int | None = None) -> None:
  """Runs independent trainings in up to `processes` parallel `experiments.paper.run_one` processes.

  Each child gets the config as JSON; finished runs are skipped as in `run_or_load`.
  """
  pending = [(c, w) for c, w in runs if not (w / "summary.json").exists()]
  active: list[tuple[subprocess.Popen, pathlib.Path]] = []
  for number, (config, workdir) in enumerate(pending, start=1):
    while len(active) >= processes:
      active = _reap(active)
    logging.info("Starting run %d/%d in a child process: %s", number, len(pending), workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_atomic(workdir / "requested_config.json", config.to_json_best_effort(indent=2))
    active.append((subprocess.Popen(
        [sys.executable, "-m", "experiments.paper.run_one", str(workdir),
         str(num_devices or 0)]), workdir))
  while active:
    active = _reap(active)


def _reap(active: list[tuple[subprocess.Popen, pathlib.Path]]
          ) -> list[tuple[subprocess.Popen, pathlib.Path]]:
  """Waits briefly; returns the runs still going, raising for one that failed."""
  time.sleep(0.5)
  still = []
  for process, workdir in active:
    code = process.poll()
    if code is None:
      still.append((process, workdir))
    elif code:
      raise errors.CmimError(f"Run {workdir} failed with exit code {code}; its error is above.")
    else:
      logging.info("Finished run %s.", workdir)
  return still


BASELINES = (controls.RAW, controls.PCA)  # Functions of the inputs alone: one probe per data set.


def embed(run_dir: pathlib.Path, out_dir: pathlib.Path, *, with_raw: bool,
          data_name: str | None = None, data_dir: str | None = None,
          num_devices: int | None = None) -> pathlib.Path:
  """Embeds the run in `run_dir` into out_dir/embeddings (the raw inputs too when `with_raw`);
  returns that folder. Skipped when its files exist (and hold the raw inputs, if asked for).

  `data_name` / `data_dir` embed another data set than the run trained on (see
  `embedding.load_trained`).
  """
  embeddings_dir = out_dir / "embeddings"
  held = embedded_names(embeddings_dir)
  if held and (controls.RAW in held or not with_raw):
    return embeddings_dir
  logging.info("Embedding %s into %s ...", run_dir, embeddings_dir)
  trained = embedding.load_trained(run_dir, data_name=data_name, data_dir=data_dir,
                                   devices=devices(num_devices))
  embedding.write_embeddings(trained, embeddings_dir, with_raw=with_raw)
  return embeddings_dir


def embedded_names(embeddings_dir: pathlib.Path) -> tuple[str, ...]:
  """The feature sets (`embedding_files.EMBEDDING_KEYS`) every split file in the folder holds;
  () without files."""
  paths = sorted(embeddings_dir.glob("*.npz"))
  if not paths:
    return ()
  held = []
  for path in paths:
    with np.load(path, allow_pickle=False) as data:  # Reads the names only, not the arrays.
      held.append(set(data.files))
  return tuple(k for k in embedding_files.EMBEDDING_KEYS if all(k in names for names in held))


def probe(embeddings_dir: pathlib.Path, probe_dir: pathlib.Path,
          settings: evaluate.ProbeSettings) -> dict[str, Any]:
  """Probes the files in `embeddings_dir` into `probe_dir`; returns the report (results.json).

  Skipped when probe_dir/results.json was written with the same settings; otherwise the
  (probe, embedding) pairs saved by an earlier probing are reused (`workflows.probe_run`).
  """
  results_path = probe_dir / workflows.RESULTS_JSON
  wanted = json.loads(json.dumps(dataclasses.asdict(settings)))
  if results_path.exists():
    probed = json.loads(results_path.read_text())
    if probed.get("info", {}).get("settings") == wanted:
      return probed
  start = time.perf_counter()
  logging.info("Probing %s ...", embeddings_dir)
  workflows.probe_run(embeddings_dir, probe_dir, settings)
  logging.info("Probed %s in %.0f s.", embeddings_dir, time.perf_counter() - start)
  return json.loads(results_path.read_text())


def embed_and_probe(run_dir: pathlib.Path, out_dir: pathlib.Path,
                    settings: evaluate.ProbeSettings, *, data_name: str | None = None,
                    data_dir: str | None = None,
                    num_devices: int | None = None) -> dict[str, Any]:
  """`embed` then `probe`: out_dir/embeddings and out_dir/probe; returns the probe report.

  The raw inputs are written only when the settings probe every embedding and control (they
  only feed the controls); embedding files that exist are kept with or without them (the inputs
  of a task may not be features).
  """
  with_raw = (settings.controls and settings.embeddings is None
              and not embedded_names(out_dir / "embeddings"))
  embeddings_dir = embed(run_dir, out_dir, with_raw=with_raw, data_name=data_name,
                         data_dir=data_dir, num_devices=num_devices)
  return probe(embeddings_dir, out_dir / "probe", settings)


def embeddings_to_probe(available: Sequence[str], learned: Sequence[str] | None = None,
                        baselines: bool = False) -> tuple[str, ...]:
  """What to probe of a run whose files hold `available` feature sets.

  The learned embeddings among them (those in `learned`; None = all), the random expansion of
  the mean encoding when the informative embedding is among those (its capacity control), and,
  when `baselines`, raw and pca (run-independent, so asked of one run per data set).
  """
  names = [k for k in available
           if k not in controls.CONTROLS and (learned is None or k in learned)]
  if "mean" in names and "informative" in names:
    names.append(controls.RANDOM_EXPANSION)
  if baselines:
    names += BASELINES
  return tuple(names)


def probe_runs(workdirs: Mapping[Any, pathlib.Path], settings: evaluate.ProbeSettings,
               learned: Sequence[str] | None = None,
               num_devices: int | None = None) -> dict[Any, dict[str, Any]]:
  """Embeds and probes every run in its workdir (`settings.embeddings` is ignored).

  Each run's `learned` embeddings (None = all its files hold) and their capacity control are
  probed (`embeddings_to_probe`); the first run's files also hold the raw inputs, and its probes
  alone cover the baselines raw and pca, which are the same for every run of the data set.

  Returns:
    key -> probe results {probe: {embedding: {metric: {"mean", ...}}}}, in the order of
    `workdirs`; `split_baselines` takes raw and pca out.
  """
  results = {}
  for number, (key, workdir) in enumerate(workdirs.items()):
    embeddings_dir = embed(workdir, workdir, with_raw=number == 0, num_devices=num_devices)
    names = embeddings_to_probe(embedded_names(embeddings_dir), learned, baselines=number == 0)
    results[key] = probe(embeddings_dir, workdir / "probe",
                         dataclasses.replace(settings, embeddings=names))["results"]
  return results


def split_baselines(results_by_run: Mapping[Any, Mapping]) -> tuple[dict[Any, dict], dict]:
  """(results without raw and pca, {probe: {"raw" / "pca": {metric: summary}}} of the one run that
  probed them, as `probe_runs` returns them).

  Raises:
    errors.CmimError: when no run, or more than one, probed the baselines.
  """
  runs = {key: stats.select_embeddings(results, lambda e: e not in BASELINES)
          for key, results in results_by_run.items()}
  holders = [key for key, results in results_by_run.items()
             if any(e in BASELINES for by_embedding in results.values() for e in by_embedding)]
  if len(holders) != 1:
    raise errors.CmimError(f"The baselines {BASELINES} should come from exactly one run's probes, "
                           f"found them in {holders}; probe the runs with `probe_runs`.")
  baselines = stats.select_embeddings(results_by_run[holders[0]], lambda e: e in BASELINES)
  return runs, baselines


def linear_accuracy_of_mean(run_dir: pathlib.Path) -> float:
  """Accuracy of the JAX linear probe on the run's mean encoding (all training rows, scored on
  its test split), embedding and probing into `run_dir` first unless done."""
  settings = evaluate.ProbeSettings(max_train=None, num_seeds=1, probes=("linear",),
                                    embeddings=("mean",))
  probed = embed_and_probe(run_dir, run_dir, settings, num_devices=1)
  return probed["results"]["linear"]["mean"]["accuracy"]["mean"]


RAW_PIXELS = "raw pixels"
PIXEL_BASELINES_NOTE = (
    "Baselines (no training): the same KNN-5 and JAX linear probe as the runs', fitted on the same "
    "training rows and scored on the same validation rows, on the raw pixels in [0, 1] and on "
    "PCA-D of them (their first D principal components, the axes fitted on the training rows "
    "only).")


def pixel_features(train_pixels: np.ndarray, test_pixels: np.ndarray,
                   latent_dims: Sequence[int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The features of the pixel baselines: the pixels, and their first D principal components.

  Args:
    train_pixels: float32 [N, P], the training rows.
    test_pixels: float32 [M, P], the scored rows.
    latent_dims: the widths D of the PCA baselines.

  Returns:
    RAW_PIXELS -> (train_pixels, test_pixels), and "PCA-<D>" -> (train [N, D], test [M, D]) for
    each D: the pixels centred with, and projected on the first D principal axes of, the training
    rows alone (`controls.pca`, the probe suite's pca control).
  """
  features = {RAW_PIXELS: (train_pixels, test_pixels)}
  every_row = np.concatenate([train_pixels, test_pixels])
  for dim in latent_dims:
    projected = controls.pca(every_row, np.arange(len(train_pixels)), dim)
    features[f"PCA-{dim}"] = (projected[:len(train_pixels)], projected[len(train_pixels):])
  return features


def pixel_baselines(data_dir: pathlib.Path | str,
                    latent_dims: Sequence[int]) -> dict[str, dict[str, float]]:
  """The pixel baselines of runs on the MNIST-like IDX split in `data_dir`, scored as the runs are.

  The features (`pixel_features`) are the images' pixels in [0, 1] as float32 [N, H * W * C]
  (the runs' inputs before binarisation, flattened: the "raw" of their embedding files) and PCA-D
  of them for each D in `latent_dims`. Each is fitted on every training row of the split and
  scored on its test rows (`contrastive_sweep`'s validation split) by
    knn5_accuracy    the runs' end-of-run KNN (`images.knn_accuracy` with the MNIST config's
                     eval.knn_k = 5: Euclidean, features not standardised), their summaries'
                     knn5_accuracy_mean;
    linear_accuracy  the JAX linear probe with seed 0 (`linear.fit_predict_classes`), which
                     `linear_accuracy_of_mean` fits on their mean encodings.

  Returns:
    {RAW_PIXELS or "PCA-<D>": {"knn5_accuracy": float, "linear_accuracy": float}}.
  """
  config = mnist_config.get_config()
  config.data.data_dir = str(data_dir)
  config.data.allow_fallback = False
  task = tasks.build_task(config)
  k = config.eval.knn_k

  def pixels_and_labels(split):  # The task's embedding inputs, flattened as embed's "raw".
    inputs, annotations = task.embedding_inputs(split)
    return inputs.reshape(len(inputs), -1), annotations["labels"]

  (train_pixels, train_labels), (test_pixels, test_labels) = map(pixels_and_labels,
                                                                 ("train", "test"))
  baselines = {}
  for name, (train, test) in pixel_features(train_pixels, test_pixels, latent_dims).items():
    logging.info("Scoring the %s baseline (%d columns) ...", name, train.shape[1])
    predicted, _ = linear.fit_predict_classes(train, train_labels, test, seed=0)
    baselines[name] = {
        f"knn{k}_accuracy": images.knn_accuracy(train, train_labels, test, test_labels, k),
        "linear_accuracy": float(np.mean(predicted == test_labels))}
  return baselines


def command_line(module: str) -> str:
  """The command that reran this process: 'python -m MODULE --flag=value ...'."""
  return " ".join(["python -m", module, *sys.argv[1:]])


def write_json(path: pathlib.Path, value: Mapping[str, Any]) -> None:
  files.write_json_atomic(path, value, default=float)


# ----------------------------------------------------------------------------- script scaffolding

MNIST_DATA_DIR_HELP = "MNIST IDX folder; '' = the loaders' default."
RERUN_NOTE = "runs already done are not repeated"


def define_flags(presets: Mapping[str, Any], *, data_dir_help: str | None = MNIST_DATA_DIR_HELP,
                 processes: bool = False, figures: bool = False) -> None:
  """The flags every paper script shares: --preset, --out, and where asked --data_dir (None: no
  such flag), --processes and --figures. Scripts call it (and define their own flags) only when
  run as a script, so the modules import cleanly side by side."""
  flags.DEFINE_enum("preset", "smoke", list(presets), "Scale of the experiment.")
  flags.DEFINE_string("out", "runs/paper", "Output folder (runs and report go below it).")
  if data_dir_help is not None:
    flags.DEFINE_string("data_dir", "", data_dir_help)
  if processes:
    flags.DEFINE_integer("processes", 1, "Parallel training processes.")
  if figures:
    flags.DEFINE_string("figures", "", "Also copy the figures here (e.g. docs/figures).")


@dataclasses.dataclass
class Experiment:
  """One run of a paper script: its command line, preset and start, which its results.json
  (`provenance`) and its report (`report_header`) record."""

  module: str
  preset: str
  command: str = ""
  start: float = dataclasses.field(default_factory=time.perf_counter)

  def __post_init__(self):
    self.command = self.command or command_line(self.module)

  def wall_s(self) -> float:
    return time.perf_counter() - self.start

  def provenance(self, wall_s: float) -> dict[str, Any]:
    """The fields every results.json starts with."""
    return {"preset": self.preset, "machine": machine_description(), "wall_time_s": wall_s,
            "command": self.command}



def report_header(title: str, command: str, wall_s: float, note: str = RERUN_NOTE) -> str:
  """A report's start: '# title', the command, the machine and the wall time (with `note`)."""
  return (f"# {title}\n\nCommand: `{command}`  \nMachine: {machine_description()}; wall time "
          f"{wall_s / 60:.1f} min ({note}).  \n")


def write_outputs(out_dir: pathlib.Path, results: Mapping[str, Any], report: str,
                  name: str = "report", results_name: str = "results",
                  figures: Sequence[pathlib.Path] = (), figures_dir: str = "") -> None:
  """out_dir/<results_name>.json and out_dir/<name>.md, each written atomically; the figures copied
  into `figures_dir` when one is given; the report printed."""
  write_json(out_dir / f"{results_name}.json", results)
  files.write_atomic(out_dir / f"{name}.md", report)
  if figures_dir:
    pathlib.Path(figures_dir).mkdir(parents=True, exist_ok=True)
    for path in figures:
      shutil.copy(path, pathlib.Path(figures_dir) / path.name)
  print(report)
