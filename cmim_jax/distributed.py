"""Multi-process start-up: `jax.distributed.initialize` from the launcher's environment.

One process per host (or per GPU) runs the same command. Where they meet comes from, in order:
  * `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`;
  * torchrun's `MASTER_ADDR`/`MASTER_PORT`, `WORLD_SIZE`, `RANK`;
  * otherwise JAX's own detection (SLURM, Open MPI, TPU pods, GKE), which needs none of them.
On CPU the processes exchange collectives through gloo (`jax_cpu_collectives_implementation`).
"""

from __future__ import annotations

import os
from typing import Mapping

import jax


def launch_arguments(env: Mapping[str, str]) -> dict[str, str | int]:
  """The `jax.distributed.initialize` keywords the environment `env` sets (none: auto-detect)."""
  arguments = {}
  address = env.get("JAX_COORDINATOR_ADDRESS")
  if not address and env.get("MASTER_ADDR"):
    address = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', '29500')}"
  if address:
    arguments["coordinator_address"] = address
  for keyword, names in (("num_processes", ("JAX_NUM_PROCESSES", "WORLD_SIZE")),
                         ("process_id", ("JAX_PROCESS_ID", "RANK"))):
    value = next((env[name] for name in names if env.get(name)), None)
    if value is not None:
      arguments[keyword] = int(value)
  return arguments


def initialize() -> None:
  """Joins the multi-process job the environment describes; call before anything uses JAX."""
  # Gloo carries collectives between the processes' CPU devices (GPU and TPU backends ignore it).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**launch_arguments(os.environ))
