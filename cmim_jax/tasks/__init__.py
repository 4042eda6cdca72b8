"""Tasks: what a training run learns from, by modality.

A task bundles the training arrays (placed on the devices by `DeviceBatcher`), the pure
preprocessing that turns a gathered batch into model inputs inside the train step, and the
end-of-run evaluation written to `summary.json`. `build_task(config)` picks one by `data.name`.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from cmim_jax.errors import ConfigError
from cmim_jax.tasks.base import Task
from cmim_jax.tasks.images import IMAGE_DATASETS, build_image_task
from cmim_jax.tasks.molecules import MOLECULE_TASK_BUILDERS
from cmim_jax.tasks.toy2d import build_toy2d_task

TASK_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    **{name: build_image_task for name in IMAGE_DATASETS},
    **MOLECULE_TASK_BUILDERS,
    "toy2d": build_toy2d_task,
}


def build_task(config: ml_collections.ConfigDict) -> Task:
  """The task for `config.data.name`; a ConfigError listing the valid names otherwise."""
  if config.data.name not in TASK_BUILDERS:
    raise ConfigError(
        f"Unknown data.name {config.data.name!r}; choose one of {sorted(TASK_BUILDERS)}.")
  return TASK_BUILDERS[config.data.name](config)


__all__ = ["TASK_BUILDERS", "Task", "build_task"]
