"""What every command-line entry point shares: readable logs and one-line errors.

`cli.run(main)` replaces `absl.app.run(main)`:
  * Logs: INFO lines of this project show; INFO chatter of other libraries (Orbax, absl, JAX's
    backend probing) is dropped unless `--verbosity=1` (or more) asks for it. Warnings and errors
    always show.
  * Errors: the project's own errors (`cmim_jax.errors.CmimError`: a bad config value, a missing
    or malformed file, no usable checkpoint) print as one line on stderr and exit with status 2.
    `--verbose` (or the environment variable CMIM_VERBOSE=1) shows their traceback too. Any other
    exception is a bug and keeps its traceback.
  * SIGTERM / SIGINT during training: the step in flight finishes, a verified checkpoint is saved,
    one line "stopped at step N; resume with the same command" is printed and the exit status is
    143 / 130 (`errors.TrainingStopped`).
"""

from __future__ import annotations

import logging as std_logging
import os
import pathlib
import sys
from typing import Callable, Sequence

from absl import app, flags, logging

import cmim_jax
import experiments
from cmim_jax import errors

VERBOSE_ENV_VAR = "CMIM_VERBOSE"
EXIT_USER_ERROR = 2

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, f"Show the traceback of errors (also: {VERBOSE_ENV_VAR}=1).")
_OWN_CODE = tuple(str(pathlib.Path(module.__file__).resolve().parent) + os.sep
                  for module in (cmim_jax, experiments))


# Third-party warnings about what we asked for on purpose (readers open checkpoints read-only).
_EXPECTED_WARNINGS = ("Given directory is read only",)


class _OwnInfoOnly(std_logging.Filter):
  """Passes warnings and errors (but the expected ones of other libraries), and below that only
  records logged by this project's code."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    own = os.path.realpath(record.pathname).startswith(_OWN_CODE)
    if record.levelno >= std_logging.WARNING:
      return own or not str(record.msg).startswith(_EXPECTED_WARNINGS)
    return own


def quiet_third_party_logs() -> None:
  """At the default verbosity, drops INFO and DEBUG records of other libraries."""
  if flags.FLAGS["verbosity"].value >= 1:
    return
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
    handler.addFilter(_OwnInfoOnly())


def python_command() -> str:
  """How to call this interpreter in a suggested next command: its path relative to the working
  folder when it lies inside it (`.venv/bin/python`), else plain `python`."""
  executable = pathlib.Path(sys.executable)
  try:
    return str(executable.relative_to(pathlib.Path.cwd()))
  except ValueError:
    return "python"


def verbose() -> bool:
  return _VERBOSE.value or os.environ.get(VERBOSE_ENV_VAR, "") not in ("", "0")


def one_line(error: BaseException) -> str:
  """The error's message on one line: its lines joined, indentation dropped."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return " | ".join(lines) or type(error).__name__


def report_and_exit(error: errors.CmimError) -> None:
  """Writes `error` as one line to stderr and exits with status 2."""
  sys.stderr.write(f"Error: {one_line(error)} (--verbose shows the traceback)\n")
  sys.stderr.flush()
  sys.exit(EXIT_USER_ERROR)


def run(main: Callable[[Sequence[str]], None]) -> None:
  """`absl.app.run(main)` with this module's logging and error handling."""

  def wrapped(argv):
    quiet_third_party_logs()
    try:
      return main(argv)
    except errors.CmimError as error:
      if verbose():
        raise
      report_and_exit(error)
    except errors.TrainingStopped as stopped:  # SIGTERM / SIGINT, checkpoint saved.
      sys.stderr.write(f"{stopped}\n")
      sys.stderr.flush()
      sys.exit(stopped.exit_status)

  app.run(wrapped)
