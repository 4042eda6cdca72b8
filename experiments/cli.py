"""What every command-line entry point shares: readable logs and one-line errors.

`cli.run(main)` replaces `absl.app.run(main)`:
  * Logs: INFO lines of this project show; INFO chatter of other libraries (Orbax, absl, JAX's
    backend probing) is dropped unless `--verbosity=1` (or more) asks for it. Warnings and errors
    always show.
  * Errors: every problem the user fixes prints as one `Error: ...` line on stderr and exits with
    status 2: the project's own errors (`cmim_jax.errors.CmimError`: a bad config value, a missing
    or malformed file, no usable checkpoint), a bad flag or config file (unknown flag or field,
    missing or broken file, unknown variant; `parse_flags`), an `app.UsageError`, and an OSError
    of the file system (permission, read-only, not a folder, dangling link, disk full;
    `os_error_message`), also when a library wrapped it. `--verbose` (or the environment variable
    CMIM_VERBOSE=1) shows the traceback too. Any other exception is a bug and keeps its traceback.
    See docs/errors.md.
  * SIGTERM / SIGINT during training: the step in flight finishes, a verified checkpoint is saved,
    one line "stopped at step N; resume with the same command" is printed and the exit status is
    143 / 130 (`errors.TrainingStopped`).
"""

from __future__ import annotations

import errno
import logging as std_logging
import os
import pathlib
import re
import shutil
import sys
from typing import Callable, Iterator, Sequence

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


def report_and_exit(error: BaseException | str) -> None:
  """Writes `error` (or a message) as one line to stderr and exits with status 2."""
  sys.stderr.write(f"Error: {one_line(error)} (--verbose shows the traceback)\n")
  sys.stderr.flush()
  sys.exit(EXIT_USER_ERROR)


# Output-path flags that must not be given empty (`--workdir=` would write into the current folder).
PATH_FLAGS = ("workdir", "out", "out_dir", "embeddings_dir")

# File-system errors a user fixes (a path, a permission, free space), with the fix to suggest.
_OS_ERROR_FIXES = {
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.ENOTDIR: "a part of the path is a file where a folder is needed",
    errno.EISDIR: "the path is a folder where a file is needed",
    errno.EEXIST: "a file or a dangling symlink stands where a folder is needed",
    errno.ENOENT: "a folder on the path is missing or a symlink on it dangles",
    errno.ELOOP: "a symlink on the path loops",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOSPC: "free some space or choose a folder on another disk",
    errno.EDQUOT: "free some space or choose a folder on another disk",
}


def _chain(error: BaseException | None) -> Iterator[BaseException]:
  """`error`, then its causes and contexts (what a library wrapped), each once."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _existing_folder(path: str) -> pathlib.Path:
  """The nearest folder at or above `path` that exists (to measure its free space)."""
  folder = pathlib.Path(path).absolute()
  while not folder.is_dir() and folder != folder.parent:
    folder = folder.parent
  return folder


def os_error_message(error: OSError) -> str | None:
  """One line for a file-system error the user fixes (it names the path and the fix), or None
  for other OSErrors. Disk full names the folder, its free bytes and, where the error says, the
  bytes needed (`error.bytes_needed`)."""
  fix = _OS_ERROR_FIXES.get(error.errno)
  if fix is None:
    return None
  path = error.filename if error.filename is not None else ""
  where = f"{path}: " if path else ""
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    folder = _existing_folder(path or ".")
    needed = getattr(error, "bytes_needed", None)
    try:
      free = f"{shutil.disk_usage(folder).free:,} bytes free"
    except OSError:
      free = "free space unknown"
    return (f"{where}no space left on the device holding {folder} ({free}"
            f"{f', {needed:,} bytes needed' if needed else ''}); {fix}.")
  return f"{where}{error.strerror or error}; {fix}."


def user_error_message(error: BaseException) -> str | None:
  """The one-line message of an error the user fixes, or None for a bug (keeps its traceback).

  User errors: `CmimError`, `app.UsageError`, and a file-system OSError (`os_error_message`) raised
  directly or wrapped by a library (found along the exception's causes).
  """
  if isinstance(error, (errors.CmimError, app.UsageError)):
    return one_line(error)
  for cause in _chain(error):
    if isinstance(cause, OSError):
      message = os_error_message(cause)
      if message:
        return message
  return None


def _flag_error_text(error: flags.Error) -> str:
  """absl's message, with a config file's embedded traceback cut to its last line."""
  text = str(error)
  if "Traceback" in text:  # ml_collections puts the config file's traceback in the message.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = lines[0].split(": Error whilst parsing config file")[0]
    last = re.sub(r"^\w+(Error|Exception): ", "", lines[-1])
    return f"{head}: {last}"
  return text


def _unknown_field_text(error: LookupError, argv: Sequence[str]) -> str:
  """An override of a field the config lacks: the flag, and ml_collections' 'did you mean'."""
  while error.args and isinstance(error.args[0], BaseException):  # AttributeError(KeyError(..)).
    error = error.args[0]
  text = str(error.args[0]) if error.args else str(error)
  names = re.findall(r"'([^']+)'", text)
  name = names[0] if names else text
  flag = next((a.split("=")[0] for a in argv if re.search(rf"\.{re.escape(name)}(=|$)",
                                                          a.split("=")[0])), f"--config.*.{name}")
  hint = re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', text)
  return (f"{flag}: the config has no field {name!r}" +
          (f"; {hint.group(0)}" if hint else "; check the spelling against the config file."))


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """Parses `argv` into `flag_values` like absl, raising every problem as one `ConfigError`.

  Covers: an unknown flag or a bad flag value; a required flag left out; a config file that is
  missing, a folder, has a syntax error, or whose `get_config` rejects the variant
  (`config.py:nosuch`); an override of a field the config lacks (with ml_collections' "did you
  mean"); an output path flag (`PATH_FLAGS`) given empty.
  """
  try:
    remaining = flag_values(list(argv))
  except flags.Error as error:
    raise errors.ConfigError(_flag_error_text(error)) from error
  except SyntaxError as error:
    raise errors.ConfigError(
        f"{error.filename}:{error.lineno}: {error.msg} (a syntax error in the config file)"
    ) from error
  except (AttributeError, KeyError) as error:
    raise errors.ConfigError(_unknown_field_text(error, argv)) from error
  for name in list(flag_values):
    flag = flag_values[name]
    if type(flag.value).__name__ == "_ErrorConfig":  # ml_collections defers a load error.
      lines = [line.strip() for line in str(flag.value._error).splitlines() if line.strip()]
      raise errors.ConfigError(f"--{name}: cannot load the config file: {lines[-1]}")
    empty = isinstance(flag.value, str) and not flag.value.strip()
    if name in PATH_FLAGS and flag.present and empty:
      raise errors.ConfigError(f"--{name} is empty; name a folder, e.g. --{name}=/tmp/run.")
  return remaining


def _verbose_requested(argv: Sequence[str]) -> bool:
  return ("--verbose" in argv or "--verbose=true" in argv or
          os.environ.get(VERBOSE_ENV_VAR, "") not in ("", "0"))


def run(main: Callable[[Sequence[str]], None]) -> None:
  """`absl.app.run(main)` with this module's logging and error handling."""

  def flags_parser(argv):
    try:
      return parse_flags(argv)
    except errors.ConfigError as error:
      if _verbose_requested(argv):
        raise
      report_and_exit(error)

  def wrapped(argv):
    quiet_third_party_logs()
    try:
      return main(argv)
    except errors.TrainingStopped as stopped:  # SIGTERM / SIGINT, checkpoint saved.
      sys.stderr.write(f"{stopped}\n")
      sys.stderr.flush()
      sys.exit(stopped.exit_status)
    except Exception as error:  # pylint: disable=broad-except
      message = user_error_message(error)
      if message is None or verbose():
        raise
      report_and_exit(message)

  app.run(wrapped, flags_parser=flags_parser)
