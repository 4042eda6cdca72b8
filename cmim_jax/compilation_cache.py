"""The persistent compilation cache: compiled programs kept on disk, so a second start of the same
config loads its train step, initialisation and evaluation instead of compiling them again.

Where: `compilation_cache_dir` of the config if set, else $CMIM_JAX_COMPILATION_CACHE if set, else
`jax_cache` inside the data cache (`$CMIM_JAX_CACHE` or ~/.cache/cmim_jax, see
`cmim_jax.data.download.cache_dir`). The value "off" at either place turns the cache off.
"""

from __future__ import annotations

import os
import pathlib

import jax
from absl import logging

from cmim_jax.data import download

ENV_VAR = "CMIM_JAX_COMPILATION_CACHE"
OFF = "off"


def cache_directory(setting: str = "") -> pathlib.Path | None:
  """The cache folder for `setting` (a config's `compilation_cache_dir`), or None when off."""
  setting = setting or os.environ.get(ENV_VAR, "")
  if setting == OFF:
    return None
  return pathlib.Path(setting) if setting else download.cache_dir() / "jax_cache"


def enable(setting: str = "") -> pathlib.Path | None:
  """Turns the persistent cache on at `cache_directory(setting)`; call before anything compiles.

  Every program is cached whatever its compile time (jax's default skips those under 1 s, which
  under light XLA flags can include the train step). Returns the folder, or None when off.
  """
  directory = cache_directory(setting)
  if directory is None:
    logging.info("Compilation cache: off.")
    return None
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  logging.info("Compilation cache: %s", directory)
  return directory
