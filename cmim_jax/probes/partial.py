"""Partial probe results: one JSON file per finished (probe, embedding), reused by a rerun.

`evaluate.run_probes` saves each (probe, embedding) record as soon as it is fitted, through a
temporary file and `os.replace`, so a stopped run keeps every finished one and a file is never
half-written. A record is reused only if its fingerprint (the probe, its settings and the exact
arrays it was fitted on) matches; a file that is unreadable, not a whole record (a key missing or
of the wrong type), or from other inputs is ignored with a warning (and then overwritten).
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

from absl import logging

from cmim_jax.probes import report


# A record as `evaluate.fit_probe` returns it: key -> the type of its value.
_RECORD_TYPES = {"values": dict, "chosen": list, "seconds": (int, float), "train_rows": list,
                 "seeds": list}


def _is_record(record: Any) -> bool:
  """Whether `record` has every key of a probe record, each of its type, and lists of numbers as
  its metric values."""
  return (isinstance(record, dict)
          and all(isinstance(record.get(k), t) for k, t in _RECORD_TYPES.items())
          and all(isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)
                  for v in record["values"].values()))


class PartialResults:
  """The records under `folder`, one `<probe>__<embedding>.json` each."""

  def __init__(self, folder: str | pathlib.Path):
    self.folder = pathlib.Path(folder)

  def path(self, probe: str, embedding: str) -> pathlib.Path:
    return self.folder / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{probe}__{embedding}.json")

  def load(self, probe: str, embedding: str, fingerprint: str) -> dict[str, Any] | None:
    """The saved record of (probe, embedding) if it was fitted on inputs with `fingerprint`."""
    path = self.path(probe, embedding)
    if not path.is_file():
      return None
    try:
      saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
      logging.warning("Ignoring unreadable partial result %s (%s); fitting again.", path, error)
      return None
    if not isinstance(saved, dict) or not _is_record(saved.get("record")):
      logging.warning("Ignoring partial result %s: not a whole record; fitting again.", path)
      return None
    if saved.get("fingerprint") != fingerprint:
      logging.warning("Ignoring partial result %s: it was fitted on other inputs or settings; "
                      "fitting again.", path)
      return None
    return saved["record"]

  def save(self, probe: str, embedding: str, fingerprint: str, record: dict[str, Any]) -> None:
    report.write_atomic(self.path(probe, embedding),
                        json.dumps({"fingerprint": fingerprint, "record": record}, indent=1))
