"""Mean encodings and informative embeddings of a trained auto-encoder.

The *informative embedding* of x is the decoder's hidden state right before its output layer,
evaluated at z = mu(x), the encoder mean (`hidden` in the model's outputs; each decoder documents
which activation that is: for a non-autoregressive decoder the input of its output layer, flattened;
for an autoregressive one the states before the output projection under teacher forcing with x,
mean-pooled over non-padding positions). The *mean encoding* is mu(x) itself. Both are computed in
batches by one jit-compiled function sharded like the train step.

`cmim_jax.embed` restores a checkpoint and applies these to a task's splits.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh

from cmim_jax import sharding as sharding_lib


def embed_batch(model, params, x: jax.Array, informative: bool = True) -> dict[str, jax.Array]:
  """Embeds model inputs x [B, ...]: mean [B, D], informative [B, H], reconstruction_nll [B].

  The informative embedding is the decoder's `hidden` at z = mu(x) (teacher-forced with x for
  autoregressive decoders); reconstruction_nll is -log p(x | z = mu(x)). With
  `informative=False` (models without a trained decoder) only `mean` is computed.
  """
  mu, _ = model.apply({"params": params}, x, method="encode")
  if not informative:
    return dict(mean=mu)
  out = model.apply({"params": params}, mu, x, method="reconstruct")
  return dict(mean=mu, informative=out["hidden"], reconstruction_nll=-out["log_px"])


def embed_inputs(model, params, inputs: np.ndarray, mesh: Mesh, batch_size: int = 1000,
                 informative: bool = True) -> dict[str, np.ndarray]:
  """Embeds preprocessed model inputs [N, ...] (e.g. pixels in [0, 1]) in fixed-size batches.

  Returns:
    mean [N, D], and unless `informative=False` informative [N, H] and reconstruction_nll [N],
    as host arrays.
  """
  num_devices = mesh.devices.size
  batch_size = max(num_devices, batch_size // num_devices * num_devices)
  embed = jax.jit(functools.partial(embed_batch, model, informative=informative),
                  in_shardings=(sharding_lib.replicated(mesh), sharding_lib.batch_sharded(mesh)),
                  out_shardings=sharding_lib.replicated(mesh))
  chunks = []
  for start in range(0, len(inputs), batch_size):
    batch = inputs[start:start + batch_size]
    padding = batch_size - len(batch)  # Pad the last batch so every call has one shape.
    if padding:
      batch = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), batch.dtype)])
    outputs = jax.device_get(embed(params, batch))
    chunks.append({k: v[:batch_size - padding] for k, v in outputs.items()})
  return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
