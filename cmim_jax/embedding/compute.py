"""Mean encodings and informative embeddings of a trained auto-encoder.

The *informative embedding* of x is the decoder's hidden state right before its output layer,
evaluated at z = mu(x), the encoder mean (`hidden` in the model's outputs). The *mean encoding* is
mu(x) itself. Both are computed in batches by one jit-compiled function sharded like the train step.
"""

from __future__ import annotations

import functools
import numbers

import jax
import numpy as np
from jax.sharding import Mesh

from cmim_jax import errors
from cmim_jax import sharding as sharding_lib


def embed_batch(model, params, x: jax.Array) -> dict[str, jax.Array]:
  """Embeds model inputs x [B, ...]: mean [B, D], informative [B, H], reconstruction_nll [B].

  The informative embedding is the decoder's `hidden` at z = mu(x) (teacher-forced with x for
  autoregressive decoders); reconstruction_nll is -log p(x | z = mu(x)). An encoder-only model
  (`model.decoder is None`, e.g. InfoNCE) has neither: only `mean` is returned.
  """
  mu, _ = model.apply({"params": params}, x, method="encode")
  if model.decoder is None:
    return dict(mean=mu)
  out = model.apply({"params": params}, mu, x, method="reconstruct")
  return dict(mean=mu, informative=out["hidden"], reconstruction_nll=-out["log_px"])


def run_batched(fn, mesh: Mesh, params, inputs: np.ndarray, batch_size: int = 1000):
  """Applies a jitted `fn(params, batch)` to `inputs` [N, ...] in batches of a multiple of the
  device count, sharded over them (the last one padded, so every call has one shape). A batch
  larger than the inputs shrinks to them (rounded up to the device count): padding never exceeds
  one row per device beyond N.

  Returns:
    `fn`'s output pytree with leaves [N, ...] as host arrays.
  """
  if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
    raise errors.ConfigError(f"The embedding batch size must be an integer >= 1, got "
                             f"{batch_size!r}; e.g. --batch_size=1000.")
  num_devices = mesh.devices.size
  rows_rounded_up = -(-max(len(inputs), 1) // num_devices) * num_devices
  batch_size = max(num_devices, min(batch_size, rows_rounded_up) // num_devices * num_devices)
  rows = sharding_lib.batch_sharded(mesh)  # Batches are placed first: a multi-process job's jit
  # takes no numpy array with a sharding.
  chunks = []
  for start in range(0, len(inputs), batch_size):
    batch = inputs[start:start + batch_size]
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - valid, *batch.shape[1:]),
                                              batch.dtype)])
    outputs = jax.device_get(fn(params, jax.device_put(batch, rows)))
    chunks.append(jax.tree.map(lambda v, valid=valid: np.asarray(v)[:valid], outputs))
  return jax.tree.map(lambda *leaves: np.concatenate(leaves), *chunks)


def embed_inputs(model, params, inputs: np.ndarray, mesh: Mesh,
                 batch_size: int = 1000) -> dict[str, np.ndarray]:
  """Embeds preprocessed model inputs [N, ...] (e.g. pixels in [0, 1]) in fixed-size batches.

  Returns:
    mean [N, D], informative [N, H], reconstruction_nll [N] as host arrays (only mean for an
    encoder-only model).
  """
  embed = jax.jit(functools.partial(embed_batch, model),
                  in_shardings=(sharding_lib.replicated(mesh), sharding_lib.batch_sharded(mesh)),
                  out_shardings=sharding_lib.replicated(mesh))
  return run_batched(embed, mesh, params, inputs, batch_size)
