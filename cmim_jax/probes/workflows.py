"""File-level jobs behind `experiments.probe` and `experiments.compare`.

  probe_run(embeddings_dir, out_dir)  reads <split>.npz, writes partial/<probe>__<embedding>.json as
                                      each finishes, then results.json and results.md
  compare_runs(run_dirs, out_dir)     reads each run's probe/results.json and embeddings, writes
                                      compare.md, compare.json, comparison.png, geometry_<run>.png
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import time
from typing import Any, Sequence

from absl import logging

from cmim_jax.embedding import files as embedding_files
from cmim_jax.errors import ConfigError, DataError, MissingInputError
from cmim_jax.probes import compare as compare_lib
from cmim_jax.probes import evaluate, geometry, partial, report

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PARTIAL_DIR = "partial"


def probe_dir(run_dir: str | pathlib.Path) -> pathlib.Path:
  return pathlib.Path(run_dir) / "probe"


def load_embedding_files(embeddings_dir: str | pathlib.Path) -> dict[str, dict]:
  """split -> arrays of every `<split>.npz` in `embeddings_dir`."""
  embeddings_dir = pathlib.Path(embeddings_dir)
  paths = sorted(embeddings_dir.glob("*.npz"))
  if not paths:
    raise MissingInputError(
        f"No embedding files (*.npz) in {embeddings_dir}; run `python -m experiments.embed "
        f"--workdir=<run dir>` first.")
  return {path.stem: embedding_files.load_npz(path) for path in paths}


def _json_ready(value: Any) -> Any:
  """Nested containers with NaN/inf turned into None (JSON has no NaN) and tuple keys joined."""
  if isinstance(value, dict):
    return {("/".join(k) if isinstance(k, tuple) else str(k)): _json_ready(v)
            for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(v) for v in value]
  if hasattr(value, "tolist"):
    return _json_ready(value.tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _dump_json(value: Any) -> str:
  return json.dumps(_json_ready(value), indent=2, allow_nan=False) + "\n"


def probe_run(embeddings_dir: str | pathlib.Path, out_dir: str | pathlib.Path,
              settings: evaluate.ProbeSettings = evaluate.ProbeSettings()) -> dict[str, Any]:
  """Probes the embeddings in `embeddings_dir`; writes results.json and results.md to `out_dir`.

  Each (probe, embedding) is saved to out_dir/partial/ as soon as it is fitted; a rerun reuses
  the saved ones whose inputs and settings are unchanged (see `partial`).

  Returns the report: see `evaluate.run_probes`, plus "wall_seconds".
  """
  files = load_embedding_files(embeddings_dir)
  start = time.perf_counter()
  out_dir = pathlib.Path(out_dir)
  result = evaluate.run_probes(files, settings, partial.PartialResults(out_dir / PARTIAL_DIR))
  result["wall_seconds"] = time.perf_counter() - start
  report.write_atomic(out_dir / RESULTS_JSON, _dump_json(result))
  report.write_atomic(out_dir / RESULTS_MD, report.probe_markdown(result))
  return result


def _file_name(run: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]", "_", run)


def _load_probe_results(run_dir: pathlib.Path) -> dict[str, Any]:
  path = probe_dir(run_dir) / RESULTS_JSON
  if not path.is_file():
    raise MissingInputError(f"{path} does not exist; run `python -m experiments.probe "
                            f"--workdir={run_dir}` first.")
  return json.loads(path.read_text(encoding="utf-8"))


def _run_geometry(run_dir: pathlib.Path, max_points: int) -> dict[str, Any] | None:
  """Geometry of the run's mean encodings of its test split (or of "all"), if embedded."""
  for split in ("test", "all"):
    path = embedding_files.embeddings_dir(run_dir) / f"{split}.npz"
    if path.is_file():
      arrays = embedding_files.load_npz(path)
      if "mean" not in arrays:  # A baseline's features (ECFP4) have no latent geometry.
        return None
      return {"split": split, **geometry.geometry(
          arrays["mean"], arrays.get(embedding_files.LABELS), max_points)}
  logging.warning("No test.npz or all.npz under %s: no geometry diagnostics for this run.",
                  embedding_files.embeddings_dir(run_dir))
  return None


def different_data(reports: dict[str, Any]) -> str:
  """'' when every run's probe report records the same data (each split's row count and SHA-256,
  see `evaluate.data_provenance`); else which runs differ and their data sources. Runs probed
  before the checksums were recorded are not compared on them (a warning says so)."""
  recorded = {name: r["info"].get("data") for name, r in reports.items()}
  unverified = [name for name, data in recorded.items()
                if not data or not all(s.get("sha256") for s in data["splits"].values())]
  if unverified:
    logging.warning("Runs %s record no data checksums (probed before they were recorded); "
                    "re-embed and re-probe them to check that every run used the same data.",
                    unverified)
  identities = {name: {split: (s["rows"], s["sha256"]) for split, s in data["splits"].items()}
                for name, data in recorded.items() if name not in unverified}
  if len({json.dumps(i, sort_keys=True) for i in identities.values()}) <= 1:
    return ""
  return "; ".join(
      f"{name}: {recorded[name]['source']}, " + ", ".join(
          f"{split} {rows} rows sha256 {sha[:12]}" for split, (rows, sha) in identity.items())
      for name, identity in identities.items())


def compare_runs(run_dirs: Sequence[str | pathlib.Path], out_dir: str | pathlib.Path,
                 names: Sequence[str] | None = None, max_points: int = 2000,
                 allow_different_data: bool = False) -> dict[str, Any]:
  """Compares probed runs: z-scores and ranks, tables, a bar chart and geometry figures.

  Args:
    run_dirs: run directories, each with probe/results.json (and embeddings/ for geometry).
    out_dir: where compare.md, compare.json and the PNGs go.
    names: a display name per run; default the directories' base names (which must differ).
    max_points: rows of the mean encodings used for the pairwise statistics.
    allow_different_data: compare runs whose data differ (`different_data`) with a warning and
      a mark in compare.md and compare.json, instead of refusing.

  Returns:
    compare.json's content.
  """
  run_dirs = [pathlib.Path(d) for d in run_dirs]
  if len(run_dirs) < 2:
    raise ConfigError(f"Compare needs at least two run directories, got {len(run_dirs)}.")
  names = list(names) if names else [d.name for d in run_dirs]
  if len(names) != len(run_dirs) or len(set(names)) != len(names):
    raise ConfigError(f"Run names {names} must be unique, one per directory; pass --names=a,b,...")
  reports = {name: _load_probe_results(d) for name, d in zip(names, run_dirs)}
  data_names = {name: r["info"].get("data_name") for name, r in reports.items()}
  if len(set(data_names.values())) > 1:
    raise DataError(f"The runs were probed on different data ({data_names}); compare runs "
                    "embedded on the same data set.")
  data_differences = different_data(reports)
  if data_differences and not allow_different_data:
    raise DataError(f"The runs' data differ: {data_differences}; compare runs embedded from the "
                    "same data, or pass --allow_different_data to compare them anyway (the "
                    "comparison is then marked).")
  if data_differences:
    logging.warning("Comparing runs whose data differ (marked in compare.md and compare.json): "
                    "%s", data_differences)

  table = compare_lib.build_table({name: r["results"] for name, r in reports.items()})
  if not table.criteria:
    raise DataError("No (probe, metric) is shared by every run and embedding; probe the runs "
                    "with the same --probes.")
  comparison = compare_lib.compare(table)
  geometry_by_run = {name: geo for name, d in zip(names, run_dirs)
                     if (geo := _run_geometry(d, max_points)) is not None}

  out_dir = pathlib.Path(out_dir)
  figures = [report.plot_comparison(comparison, out_dir / "comparison.png").name]
  for name, geo in geometry_by_run.items():
    figures.append(report.plot_geometry(
        geo, f"{name}: mean encodings ({geo['split']} split)",
        out_dir / f"geometry_{_file_name(name)}.png").name)
  markdown = report.compare_markdown(table, comparison, geometry_by_run, figures)
  if data_differences:
    markdown = (f"> **Warning: the runs' data differ** ({data_differences}); the ranking mixes "
                "data sets.\n\n" + markdown)
  report.write_atomic(out_dir / "compare.md", markdown)
  content = {
      "runs": dict(zip(names, map(str, run_dirs))),
      "data": {name: r["info"].get("data") for name, r in reports.items()},
      "data_differ": data_differences,
      "entries": table.entries, "criteria": table.criteria, "values": table.values,
      "dropped_criteria": table.dropped,
      "z": comparison["z"], "rank": comparison["rank"],
      "per_entry": comparison["per_entry"], "per_run": comparison["per_run"],
      "controls": table.controls, "control_values": table.control_values,
      "control_z": comparison["control_z"], "per_control": comparison["per_control"],
      "geometry": {name: {k: v for k, v in geo.items()
                          if k not in ("norms", "angles", "same_class")}
                   for name, geo in geometry_by_run.items()},
  }
  report.write_atomic(out_dir / "compare.json", _dump_json(content))
  return content
