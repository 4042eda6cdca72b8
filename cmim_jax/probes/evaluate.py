"""Runs the probe suite on the embedding files of one run.

Two layouts are understood (see `cmim_jax.embedding.files`):
  * "train" and "test" files: fit on train, score on test; metrics are named plainly ("accuracy").
  * one "all" file with split_<scheme> arrays (0 train, 1 valid, 2 test): for every scheme two
    fits of each probe, with the same hyper-parameter search (CV within the rows fitted on):
      test score        fit on its train rows with the valid rows merged in, score on its test
                        rows: "<metric>@<family>"
      validation score  fit on its train rows only, score on its valid rows (skipped for a scheme
                        without valid rows): "val_<metric>@<family>"
    Schemes that differ only by a trailing number form a family (split_random0..2 -> "random");
    each label pools every scheme and seed of the family. Choose among embeddings and probes with
    the val_ metrics; the plain ones are then the selected entry's test score.

Results: {probe: {embedding: {metric: {"mean", "std", "n", "train_rows", "seeds"}}}}, where n
counts the fits pooled (seeds x schemes), std is their population standard deviation (0 when
n = 1), train_rows lists the rows each evaluation fitted on and seeds the seeds used.

Besides the embeddings in the files, both layouts get the controls of `probes.controls` (PCA of
the raw inputs, a random expansion of the mean encoding). A control is derived once per evaluation
from that evaluation's training rows only (PCA axes, standardisation): the validation fit's
statistics come from its train rows, the test fit's from train+valid, never from scored rows. Each
(probe, embedding) is logged when it starts and ends, and, given a `partial.PartialResults`,
saved as soon as it is done and reused by a rerun on the same inputs (its fingerprint covers the
rows of every fit, so a record made with other fits, e.g. before the validation fits existed, is
fitted again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging
from sklearn.model_selection import train_test_split

from cmim_jax.data import labels as labels_lib
from cmim_jax.embedding import files as embedding_files
from cmim_jax.errors import ConfigError, DataError
from cmim_jax.probes import controls, partial, suite


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
  """How the suite runs.

  Attributes:
    max_train: fit on at most this many training rows, a fixed subsample (seed 0; stratified by
      label for classification) shared by every probe except those with `all_rows` (`linear`);
      None or 0 = all rows.
    num_seeds: repetitions of stochastic probes (seeds 0 .. num_seeds - 1).
    cv_folds: folds of the cross-validation that chooses hyper-parameters on the training rows.
    probes: names of the probes to run; None = the default probes of the task's kind.
    embeddings: which embeddings to probe; None = every one in the files (and every control,
      when `controls`).
    controls: whether `embeddings=None` includes the controls (raw, pca, random_expansion).
    pca_dim: width of the pca control; None = the width of the mean encoding (then it needs
      "mean" in the files).
  """

  max_train: int | None = 10000
  num_seeds: int = 3
  cv_folds: int = 3
  probes: Sequence[str] | None = None
  embeddings: Sequence[str] | None = None
  controls: bool = True
  pca_dim: int | None = None


TEST, VALID = "test", "valid"


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """One partition: fit on `train_rows`, score on `test_rows` (the scored rows).

  Attributes:
    family: None for a fixed train/test split, else the split scheme's family ("random").
    train_rows: [N_fit] rows fitted on (and the only ones a control's statistics come from).
    test_rows: [N_scored] rows scored: test rows, or a scheme's valid rows when scored_on=VALID.
    scored_on: TEST, or VALID for a scheme's validation fit (metrics "val_<metric>@<family>").
  """

  family: str | None
  train_rows: np.ndarray
  test_rows: np.ndarray
  scored_on: str = TEST

  def describe(self) -> str:
    """"random split, test fit (80 train rows, 10 scored)": what a log line or report names."""
    return (f"{self.family or 'train/test'} split, {self.scored_on} fit ({len(self.train_rows)} "
            f"train rows, {len(self.test_rows)} scored)")

  def label(self, metric: str) -> str:
    """"rmse" (train/test), "rmse@random" (test score) or "val_rmse@random" (validation)."""
    if self.family is None:
      return metric
    return f"{'val_' if self.scored_on == VALID else ''}{metric}@{self.family}"


Y_KEYS = {suite.CLASSIFICATION: embedding_files.LABELS, suite.REGRESSION: embedding_files.TARGETS,
          suite.BINARY: embedding_files.BINARY_LABELS}


def task_kind(arrays: Mapping[str, np.ndarray]) -> str:
  """CLASSIFICATION when the file holds labels, REGRESSION when it holds targets, BINARY when it
  holds binary_labels."""
  for kind, key in Y_KEYS.items():
    if key in arrays:
      return kind
  raise DataError(f"Embedding file holds none of {sorted(Y_KEYS.values())} (keys: "
                  f"{sorted(arrays)}); nothing to probe.")


def subsample(rows: np.ndarray, y: np.ndarray, max_train: int | None, kind: str) -> np.ndarray:
  """At most `max_train` of `rows` (sorted), stratified by y[rows] for classification; seed 0."""
  if not max_train or len(rows) <= max_train:
    return rows
  stratify = y[rows] if kind == suite.CLASSIFICATION else None
  if stratify is not None and np.min(np.unique(stratify, return_counts=True)[1]) < 2:
    stratify = None  # A class with a single example cannot be stratified.
  kept, _ = train_test_split(rows, train_size=max_train, stratify=stratify, random_state=0)
  return np.sort(kept)


def scheme_family(scheme: str) -> str:
  """"random0" -> "random"; a name without a trailing number is its own family."""
  return re.sub(r"\d+$", "", scheme) or scheme


def _num_rows(arrays: Mapping[str, np.ndarray]) -> int | None:
  for key in (embedding_files.LABELS, embedding_files.TARGETS, *embedding_files.EMBEDDING_KEYS):
    if key in arrays:
      return int(len(arrays[key]))
  return None


def data_provenance(files: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
  """{"source": the data source (None for files written before it was recorded), "splits":
  {split: {"rows", "sha256"}}}, from the embedding files (see `cmim_jax.embedding.files`)."""
  sources = {str(a[embedding_files.DATA_SOURCE]) for a in files.values()
             if embedding_files.DATA_SOURCE in a}
  return {"source": ", ".join(sorted(sources)) or None,
          "splits": {split: {"rows": _num_rows(a),
                             "sha256": (str(a[embedding_files.DATA_SHA256])
                                        if embedding_files.DATA_SHA256 in a else None)}
                     for split, a in sorted(files.items())}}


def _check_consistent(files: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  for key in ("step", "data_name", "method"):
    values = {split: str(arrays[key]) for split, arrays in files.items() if key in arrays}
    if len(set(values.values())) > 1:
      raise DataError(f"The embedding files disagree on {key}: {values}; re-embed every split "
                      "from one checkpoint with `python -m experiments.embed`.")


def _checked_annotations(split: str, arrays: Mapping[str, np.ndarray], y_key: str,
                         min_classes: int = 2) -> np.ndarray:
  """The file's labels as int32 [N] or its targets, checked (`cmim_jax.data.labels`)."""
  source = f"{split}.npz {y_key!r}"
  if y_key == embedding_files.LABELS:
    return labels_lib.class_labels(arrays[y_key], source, min_classes=min_classes)
  if y_key == embedding_files.BINARY_LABELS:
    return labels_lib.binary_labels(arrays[y_key], source)
  return labels_lib.regression_targets(arrays[y_key], source)


def _check_rows(split: str, arrays: Mapping[str, np.ndarray], y_key: str) -> None:
  rows = len(arrays[y_key])
  for key in embedding_files.EMBEDDING_KEYS:
    if key in arrays and (np.ndim(arrays[key]) != 2 or len(arrays[key]) != rows):
      raise DataError(f"The {split} file's {key!r} has shape {np.shape(arrays[key])} but "
                      f"{rows} {y_key}; re-embed with `python -m experiments.embed`.")


def _scheme_evaluations(scheme: str, split: np.ndarray) -> list[Evaluation] | None:
  """The test fit (train+valid -> test) and, given valid rows, the validation fit (train -> valid)
  of the split scheme `split` [N] (0 train, 1 valid, 2 test). None when the scheme leaves train
  or test empty (a scaffold split of a small set can): the caller skips it."""
  family = scheme_family(scheme)
  train_rows = np.flatnonzero(split == embedding_files.SPLIT_TRAIN)
  valid_rows = np.flatnonzero(split == embedding_files.SPLIT_VALID)
  test_rows = np.flatnonzero(split == embedding_files.SPLIT_TEST)
  if not len(test_rows) or not len(train_rows):
    logging.warning("Skipping split_%s: it has %d train, %d valid and %d test rows; train and "
                    "test each need at least one. The other schemes are probed.", scheme,
                    len(train_rows), len(valid_rows), len(test_rows))
    return None
  evaluations = [Evaluation(family, np.sort(np.concatenate([train_rows, valid_rows])), test_rows)]
  if len(valid_rows):
    evaluations.append(Evaluation(family, train_rows, valid_rows, VALID))
  return evaluations


def plan(files: Mapping[str, Mapping[str, np.ndarray]]
         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[Evaluation]]:
  """Pools the split files into one table and lists the evaluations to run.

  Returns:
    features: embedding name -> [N, F] over the pooled rows.
    annotations: "labels" [N] or "targets" [N, T] over the pooled rows.
    evaluations: the train/test partitions of the pooled rows.
  """
  _check_consistent(files)
  if {"train", "test"} <= set(files):
    train, test = files["train"], files["test"]
    kind = task_kind(train)
    y_key = Y_KEYS[kind]
    _check_rows("train", train, y_key)
    _check_rows("test", test, y_key)
    names = [k for k in embedding_files.EMBEDDING_KEYS if k in train and k in test]
    features = {k: np.concatenate([train[k], test[k]]) for k in names}
    annotations = {y_key: np.concatenate([_checked_annotations("train", train, y_key),
                                          _checked_annotations("test", test, y_key, 0)])}
    n_train, n_test = len(train[y_key]), len(test[y_key])
    return features, annotations, [Evaluation(None, np.arange(n_train),
                                              np.arange(n_train, n_train + n_test))]
  if "all" in files:
    arrays = files["all"]
    kind = task_kind(arrays)
    y_key = Y_KEYS[kind]
    _check_rows("all", arrays, y_key)
    schemes = embedding_files.split_schemes(arrays)
    if not schemes:
      raise DataError("all.npz has no split_<scheme> arrays, so there is no test set; the task "
                      "must provide split schemes (see Task.embedding_inputs).")
    per_scheme = {scheme: _scheme_evaluations(scheme, split) for scheme, split in schemes.items()}
    evaluations = [e for scheme_evaluations in per_scheme.values() if scheme_evaluations
                   for e in scheme_evaluations]
    if not evaluations:
      raise DataError(f"Every split scheme of all.npz ({sorted(schemes)}) leaves train or test "
                      "empty; nothing to probe. Embed a larger data set.")
    features = {k: arrays[k] for k in embedding_files.EMBEDDING_KEYS if k in arrays}
    return features, {y_key: _checked_annotations("all", arrays, y_key)}, evaluations
  raise DataError(f"Found embedding splits {sorted(files)}; the probes need train and test, or "
                  "all (with split_* schemes). Run `python -m experiments.embed` first.")


def _summary(values: Sequence[float], train_rows: Sequence[int],
             seeds: Sequence[int]) -> dict[str, Any]:
  values = np.asarray(values, np.float64)
  return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": int(len(values)),
          "train_rows": [int(n) for n in train_rows], "seeds": [int(seed) for seed in seeds]}


def fingerprint(probe: suite.Probe, settings: ProbeSettings, xs: Sequence[np.ndarray],
                y: np.ndarray, fits: Sequence[tuple[Evaluation, np.ndarray]]) -> str:
  """A hash of everything a (probe, embedding) result depends on: the probe and its grid, the
  settings that affect it, the features of every fit ([N, F] each; an array shared by several fits
  counts once, so a file's embedding hashes as one array), the labels/targets and the scored and
  fitted rows of every fit (so adding or dropping a fit changes it)."""
  digest = hashlib.blake2b(digest_size=16)
  digest.update(json.dumps([probe.name, probe.kind, {k: list(v) for k, v in probe.grid.items()},
                            settings.num_seeds if probe.stochastic else 1,
                            settings.cv_folds if probe.selection == "cv" else None]).encode())
  distinct = list({id(x): x for x in xs}.values())
  for array in (*distinct, y, *(rows for fit in fits for rows in (fit[0].test_rows, fit[1]))):
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(array.data)
  return digest.hexdigest()


def fit_probe(probe: suite.Probe, xs: Sequence[np.ndarray], y: np.ndarray,
              fits: Sequence[tuple[Evaluation, np.ndarray]],
              settings: ProbeSettings) -> dict[str, Any]:
  """Every fit of `probe` (each evaluation, each seed), on features xs[i] [N, F] for fits[i]: a
  JSON-ready record {"values": {metric label: [value per fit]}, "chosen": [...], "seconds",
  "train_rows", "seeds"}.
  """
  seeds = list(range(settings.num_seeds)) if probe.stochastic else [0]
  record = {"values": {}, "chosen": [], "seconds": 0.0, "skipped": [],
            "train_rows": [int(len(rows)) for _, rows in fits], "seeds": seeds}
  for x, (evaluation, train_rows) in zip(xs, fits):
    for seed in seeds:
      outcome = suite.fit_and_score(probe, seed, x[train_rows], y[train_rows],
                                    x[evaluation.test_rows], y[evaluation.test_rows],
                                    settings.cv_folds)
      for metric, value in outcome.metrics.items():
        record["values"].setdefault(evaluation.label(metric), []).append(value)
      if outcome.chosen:
        record["chosen"].append(outcome.chosen)
      record["seconds"] += outcome.seconds
      if seed == seeds[0]:  # The labels, hence the skipped tasks, do not depend on the seed.
        record["skipped"] += [f"{evaluation.describe()}: {reason}" for reason in outcome.skipped]
  return record


def features_per_evaluation(features: Mapping[str, np.ndarray], evaluations: Sequence[Evaluation],
                            settings: ProbeSettings) -> dict[str, list[np.ndarray]]:
  """name -> the features [N, F] of each evaluation (aligned with `evaluations`).

  The files' embeddings are one array shared by every evaluation; each derived control wanted by
  `settings` (see `controls.add_controls`) is derived per evaluation, its statistics taken from
  that evaluation's train_rows only. Deriving per evaluation rather than once for the file keeps a
  split scheme's valid and test rows, which are another scheme's training rows, out of every
  statistic of the fits that score them.
  """
  if settings.embeddings is not None:
    wanted = settings.embeddings
  else:
    wanted = controls.DERIVED if settings.controls else ()
  derived = [controls.add_controls(features, e.train_rows, wanted, pca_dim=settings.pca_dim)
             for e in evaluations]
  return {name: [each[name] for each in derived] for name in derived[0]}


def _name_tasks(reason: str, task_names: Sequence[str]) -> str:
  """"task 3: ..." -> "task 3 (NR-ER): ..." given the files' task names."""
  match = re.search(r"task (\d+):", reason)
  if not match or int(match.group(1)) >= len(task_names):
    return reason
  task = int(match.group(1))
  return reason.replace(match.group(0), f"task {task} ({task_names[task]}):")


def _headline(record: Mapping[str, Any]) -> str:
  return ", ".join(f"{label} {np.mean(values):.4f}" for label, values in record["values"].items())


def run_probes(files: Mapping[str, Mapping[str, np.ndarray]],
               settings: ProbeSettings = ProbeSettings(),
               store: partial.PartialResults | None = None) -> dict[str, Any]:
  """Fits and scores every selected probe on every selected embedding and control.

  Args:
    files: split name -> the arrays of its embedding file.
    settings: see `ProbeSettings`.
    store: where each finished (probe, embedding) is saved at once, and found again by a rerun
      on the same inputs (then not refitted); None = keep nothing.

  Returns:
    {"results": {probe: {embedding: {metric: {mean, std, n, train_rows, seeds}}}},
     "chosen": {probe: {embedding: [hyper-parameters chosen on train, one per fit]}},
     "seconds": {probe: {embedding: total fit + score wall time}},
     "reused": [[probe, embedding] taken from `store`],
     (binary sets: info["skipped_tasks"] lists "<fit>, task <t>: <why>" for each task a fit left
      out because its train or test part holds a single class),
     "info": what was fitted on what (kind, layout, row counts, settings, checkpoint step, ...)}.
  """
  features, annotations, evaluations = plan(files)
  first = next(iter(files.values()))
  task_names = [str(n) for n in first.get(embedding_files.TASK_NAMES, [])]
  y_key, y = next(iter(annotations.items()))
  kind = next(kind for kind, key in Y_KEYS.items() if key == y_key)
  probes = suite.select_probes(kind, settings.probes)
  if settings.embeddings is None and not settings.controls:
    features = {k: v for k, v in features.items() if k not in controls.CONTROLS}
  per_evaluation = features_per_evaluation(features, evaluations, settings)
  names = list(settings.embeddings or per_evaluation)
  missing = [name for name in names if name not in per_evaluation]
  if missing:
    raise ConfigError(f"No {missing} embeddings in the files or controls (available: "
                      f"{sorted(per_evaluation)}; pca needs raw inputs, which `experiments.embed` "
                      "writes for image tasks, and mean or ProbeSettings.pca_dim).")

  subsampled = [(evaluation, subsample(evaluation.train_rows, y, settings.max_train, kind))
                for evaluation in evaluations]
  everything = [(evaluation, evaluation.train_rows) for evaluation in evaluations]
  results, chosen, seconds, reused, skipped = {}, {}, {}, [], {}
  total = len(probes) * len(names)
  for number, (probe, name) in enumerate(((p, n) for p in probes for n in names), start=1):
    fits = everything if probe.all_rows else subsampled
    key = fingerprint(probe, settings, per_evaluation[name], y, fits) if store else None
    record = store.load(probe.name, name, key) if store else None
    if record is not None:
      reused.append([probe.name, name])
      logging.info("Probe %d/%d: %s on %s already done (%s); reusing %s.", number, total,
                   probe.name, name, _headline(record), store.path(probe.name, name))
    else:
      logging.info("Probe %d/%d: fitting %s on %s (%s, %d training rows) ...", number, total,
                   probe.name, name, "x".join(map(str, per_evaluation[name][0].shape[1:])),
                   len(fits[0][1]))
      start = time.perf_counter()
      record = fit_probe(probe, per_evaluation[name], y, fits, settings)
      logging.info("Probe %d/%d: %s on %s took %.1f s: %s.", number, total, probe.name, name,
                   time.perf_counter() - start, _headline(record))
      if store:
        store.save(probe.name, name, key, record)
    results.setdefault(probe.name, {})[name] = {
        label: _summary(values, record["train_rows"], record["seeds"])
        for label, values in record["values"].items()}
    if record["chosen"]:
      chosen.setdefault(probe.name, {})[name] = record["chosen"]
    seconds.setdefault(probe.name, {})[name] = record["seconds"]
    for reason in record.get("skipped", []):
      reason = _name_tasks(reason, task_names)
      if reason not in skipped:
        skipped[reason] = True
        logging.warning("Skipped a task for %s: %s.", probe.name, reason)

  info = {
      "kind": kind,
      "layout": "train/test" if evaluations[0].family is None else "split schemes",
      "evaluations": [{"family": e.family, "scored_on": e.scored_on,
                       "train_rows": int(len(e.train_rows)),
                       "fitted_rows": int(len(rows)), "test_rows": int(len(e.test_rows))}
                      for e, rows in subsampled],
      "settings": dataclasses.asdict(settings),
      "probes": {p.name: {"stochastic": p.stochastic, "all_rows": p.all_rows,
                          "selection": p.selection,
                          "grid": {k: list(v) for k, v in p.grid.items()}} for p in probes},
      "controls": [name for name in names if name in controls.CONTROLS],
      **{key: first[key].item() for key in ("step", "data_name", "method") if key in first},
      "data": data_provenance(files),
      **({"task_names": task_names} if task_names else {}),
      **{key: int(value) for key, value in first.items() if key.startswith("coverage_")},
  }
  if skipped:
    info["skipped_tasks"] = list(skipped)
  return {"results": results, "chosen": chosen, "seconds": seconds, "reused": reused,
          "info": info}
