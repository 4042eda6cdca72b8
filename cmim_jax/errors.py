"""The project's error types: problems a user fixes (a config value, a file, a checkpoint).

Each message says what is wrong and what to change. The command-line entry points print these as
one line on stderr and exit with status 2 (`experiments.cli`); anything else is a bug and keeps
its traceback. Each type also derives from the built-in one that code catching it used before
(ValueError, FileNotFoundError, RuntimeError), so `except ValueError` keeps working.
"""


class CmimError(Exception):
  """Base of the errors a user fixes; the CLI prints their message without a traceback."""


class ConfigError(CmimError, ValueError):
  """A config value (or command-line flag) is invalid."""


class DataError(CmimError, ValueError):
  """An input file is unreadable, malformed, or holds no usable rows."""


class MissingInputError(CmimError, FileNotFoundError):
  """An input file or folder the user named (or a run should hold) does not exist."""


class CheckpointError(CmimError, RuntimeError):
  """No checkpoint can be restored: none exists, or every one is damaged."""


class DataUnavailableError(CmimError, RuntimeError):
  """No source (folder, cache, download, tfds) could provide a data set."""


class TrainingStopped(Exception):
  """SIGTERM or SIGINT stopped training after a verified checkpoint of the step it reached; not
  an error: the CLI prints the message as one line and exits with `exit_status`.

  Attributes:
    step: the step saved.
    exit_status: 128 + the signal number (143 for SIGTERM, 130 for SIGINT).
  """

  def __init__(self, step: int, signum: int):
    super().__init__(f"stopped at step {step}; resume with the same command")
    self.step, self.exit_status = step, 128 + signum
