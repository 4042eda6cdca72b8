"""Mean encodings and informative embeddings of a trained auto-encoder.

The *informative embedding* of x is the decoder's hidden state right before its output layer,
evaluated at z = mu(x), the encoder mean (`hidden` in the model's outputs). The *mean encoding* is
mu(x) itself. Both are computed in batches by one jit-compiled function sharded like the train step.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh

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


def embed_inputs(model, params, inputs: np.ndarray, mesh: Mesh,
                 batch_size: int = 1000) -> dict[str, np.ndarray]:
  """Embeds preprocessed model inputs [N, ...] (e.g. pixels in [0, 1]) in fixed-size batches.

  Returns:
    mean [N, D], informative [N, H], reconstruction_nll [N] as host arrays (only mean for an
    encoder-only model).
  """
  num_devices = mesh.devices.size
  batch_size = max(num_devices, batch_size // num_devices * num_devices)
  rows = sharding_lib.batch_sharded(mesh)  # Batches are placed first: a multi-process job's jit
  # takes no numpy array with a sharding.
  embed = jax.jit(functools.partial(embed_batch, model),
                  in_shardings=(sharding_lib.replicated(mesh), rows),
                  out_shardings=sharding_lib.replicated(mesh))
  chunks = []
  for start in range(0, len(inputs), batch_size):
    batch = inputs[start:start + batch_size]
    padding = batch_size - len(batch)  # Pad the last batch so every call has one shape.
    if padding:
      batch = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), batch.dtype)])
    outputs = jax.device_get(embed(params, jax.device_put(batch, rows)))
    chunks.append({k: v[:batch_size - padding] for k, v in outputs.items()})
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
