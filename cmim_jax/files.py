"""Small files written whole or not at all: a temporary file beside the target, then `os.replace`.

Readers (a paper script, `experiments.compare`, a resumed run) then see either the old content or
the new, never a half-written file, whatever kills the writer.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any


def write_atomic(path: str | pathlib.Path, data: str | bytes) -> pathlib.Path:
  """Writes text (UTF-8) or bytes to `path` via a temporary file in its folder and `os.replace`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  payload = data.encode("utf-8") if isinstance(data, str) else data
  fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as file:
      file.write(payload)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temp_name, path)
  except BaseException:
    pathlib.Path(temp_name).unlink(missing_ok=True)
    raise
  return path


def write_json_atomic(path: str | pathlib.Path, value: Any, **dumps_kwargs) -> pathlib.Path:
  """`value` as indented JSON (and a final newline) at `path`, atomically."""
  return write_atomic(path, json.dumps(value, indent=2, **dumps_kwargs) + "\n")
