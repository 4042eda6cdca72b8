"""Checks the references in README.md and docs/*.md against the code.

Two kinds of reference are checked:
  `--config.FIELD=...`   FIELD (lower-case, dotted) must be a field, or a group of fields, of the
                         `get_config()` of some module in experiments/configs/;
  `python -m MODULE`     MODULE must be a module Python finds (`importlib.util.find_spec`; the
                         entry points are not imported: their absl flags would clash).
Placeholders in capitals (`--config.FIELD=VALUE`) and `<name>` are not references.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import pathlib
import pkgutil
import re
from typing import Iterable

import ml_collections

from experiments import configs

ROOT = pathlib.Path(__file__).resolve().parents[1]
_FIELD = re.compile(r"--config\.([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)")
_MODULE = re.compile(r"python3?\s+-m\s+([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)")


def doc_files(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
  return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _paths(config: ml_collections.ConfigDict, prefix: str = "") -> Iterable[str]:
  for key, value in config.items():
    yield prefix + key
    if isinstance(value, ml_collections.ConfigDict):
      yield from _paths(value, f"{prefix}{key}.")


@functools.cache
def config_fields() -> frozenset[str]:
  """Every field path (and group path) of every experiments/configs module's get_config() (the
  config files; a module whose get_config needs an argument is a helper they share)."""
  fields = set()
  for module in pkgutil.iter_modules(configs.__path__):
    get_config = importlib.import_module(f"{configs.__name__}.{module.name}").get_config
    if any(parameter.default is inspect.Parameter.empty
           for parameter in inspect.signature(get_config).parameters.values()):
      continue
    fields.update(_paths(get_config()))
  return frozenset(fields)


def _module_exists(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except ModuleNotFoundError:  # A parent package is missing.
    return False


def references(text: str) -> list[tuple[int, str, str]]:
  """(line number, "field" or "module", name) of every reference in `text`."""
  return [(number, kind, name) for number, line in enumerate(text.splitlines(), start=1)
          for kind, pattern in (("field", _FIELD), ("module", _MODULE))
          for name in pattern.findall(line) if not name.isupper()]  # MODULE: a placeholder.


def problems(text: str, source: str) -> list[str]:
  """One line per reference in `text` that names no config field or no module."""
  found = []
  for number, kind, name in references(text):
    if kind == "field" and name not in config_fields():
      found.append(f"{source}:{number}: --config.{name}: no such field in any "
                   "experiments/configs get_config()")
    elif kind == "module" and not _module_exists(name):
      found.append(f"{source}:{number}: python -m {name}: no such module")
  return found


def check(root: pathlib.Path = ROOT) -> list[str]:
  """The problems of every doc file under `root`."""
  return [problem for path in doc_files(root)
          for problem in problems(path.read_text(encoding="utf-8"), str(path.relative_to(root)))]
