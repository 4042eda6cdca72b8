"""The projection head of the InfoNCE methods: encoder means -> the space where views are compared."""

from __future__ import annotations

import flax.linen as nn
import jax


class ProjectionHead(nn.Module):
  """g(mu): [B, D] -> [B, output_dim] via Dense(hidden_dim), GELU, Dense(output_dim) (SimCLR's head).

  output_dim None keeps the input's size D (cMIM's "projection" anchor, compared with z).

  The contrastive loss is computed on g(mu), while the embedding of x stays mu (Chen et al. 2020
  found the representation before the head transfers better).
  """

  hidden_dim: int = 128
  output_dim: int | None = 64

  @nn.compact
  def __call__(self, mu: jax.Array) -> jax.Array:
    output_dim = mu.shape[-1] if self.output_dim is None else self.output_dim
    return nn.Dense(output_dim)(nn.gelu(nn.Dense(self.hidden_dim)(mu)))
