"""Perceiver Gaussian encoder q(z|x) and Perceiver-style pixel decoder p(x|z) for images.

Images are cut into non-overlapping P x P patches; each patch is a token (a 28x28 image with P = 4
gives N = 49 tokens). Shapes: B = batch, N = patches, C = width, K = latents, M = memory tokens.

  encoder: patches -> Dense(C) + learned positions [N, C] -> PerceiverCore (K latent queries
           cross-attend to the tokens, then self-attend) -> mean over the K latents -> mu, logvar.
  decoder: z -> Dense to M memory tokens [M, C] -> self-attention on the memory -> N learned
           per-patch output queries cross-attend to the memory -> LayerNorm -> hidden [N, C]
           -> Dense(P*P*channels) per patch -> logits [H, W, channels].
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmim_jax.models.attention import CrossAttentionBlock, PerceiverCore, SelfAttentionBlock
from cmim_jax.models.gaussian import gaussian_outputs
from cmim_jax.errors import ConfigError
from cmim_jax.models.likelihoods import PIXEL_LIKELIHOODS


def check_patch_size(image_shape: Sequence[int], patch_size: int) -> None:
  """A ConfigError unless `patch_size` divides the image height and width (image_shape[:2])."""
  height, width = image_shape[0], image_shape[1]
  if patch_size < 1 or height % patch_size or width % patch_size:
    divisors = [p for p in range(1, min(height, width) + 1) if height % p == 0 and width % p == 0]
    raise ConfigError(
        f"model.perceiver.patch_size={patch_size} must divide the image size {height}x{width}; "
        f"use a divisor of both, one of {divisors} (e.g. "
        f"--config.model.perceiver.patch_size={max(p for p in divisors if p <= 4)}).")


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
  """[B, H, W, C] -> [B, (H/P)*(W/P), P*P*C], patches in row-major order."""
  batch, height, width, channels = images.shape
  check_patch_size((height, width), patch_size)
  rows, cols = height // patch_size, width // patch_size
  patches = images.reshape(batch, rows, patch_size, cols, patch_size, channels)
  return patches.transpose(0, 1, 3, 2, 4, 5).reshape(batch, rows * cols, -1)


def unpatchify(patches: jax.Array, image_shape: Sequence[int], patch_size: int) -> jax.Array:
  """The inverse of `patchify`: [B, N, P*P*C] -> [B, H, W, C] for image_shape = (H, W, C)."""
  height, width, channels = image_shape
  rows, cols = height // patch_size, width // patch_size
  images = patches.reshape(patches.shape[0], rows, cols, patch_size, patch_size, channels)
  return images.transpose(0, 1, 3, 2, 4, 5).reshape(patches.shape[0], height, width, channels)


def _positions(module: nn.Module, name: str, num: int, width: int) -> jax.Array:
  return module.param(name, nn.initializers.normal(0.02), (num, width))


class PerceiverImageEncoder(nn.Module):
  """x [B, H, W, C] -> (mu [B, D], logvar [B, D]), logvar soft-clamped to [logvar_min, logvar_max].

  Layers compute in `dtype` (parameters stay float32); mu and logvar come out float32.
  """

  latent_dim: int
  patch_size: int = 4
  width: int = 64
  num_latents: int = 16
  num_heads: int = 4
  num_layers: int = 2  # Self-attention blocks on the latents.
  mlp_ratio: int = 4
  logvar_min: float = -8.0
  logvar_max: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    patches = patchify(x, self.patch_size)
    tokens = nn.Dense(self.width, dtype=self.dtype, name="embed")(patches)
    tokens = tokens + _positions(self, "positions", patches.shape[1], self.width).astype(self.dtype)
    latents = PerceiverCore(self.num_latents, self.width, self.num_heads, self.num_layers,
                            self.mlp_ratio, self.dtype)(tokens)
    pooled = jnp.mean(latents, axis=1)
    mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="mu")(pooled)
    logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(pooled)
    return gaussian_outputs(mu, logvar, self.logvar_min, self.logvar_max)


class PerceiverImageDecoder(nn.Module):
  """z [B, D] -> (outputs [B, H, W, C*K], hidden [B, N * width]); K: the pixel likelihood's
  parameters per channel (1: Bernoulli logits, the default).

  `hidden` is the LayerNormed output-query state [B, N, width] that feeds the per-patch output
  layer, flattened patch by patch (row-major) to one vector per example: the informative
  embedding keeps where each part of the image is, as the conv decoder's does. Layers compute in
  `dtype`; `hidden` comes out float32.
  """

  output_shape: Sequence[int]
  patch_size: int = 4
  width: int = 64
  num_memory_tokens: int = 16
  num_heads: int = 4
  num_layers: int = 1  # Self-attention blocks on the memory.
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  likelihood: str = "bernoulli"  # The pixel likelihood (`cmim_jax.models.likelihoods`).

  def log_likelihood(self, outputs: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x|z) [B] of images x [B, H, W, C] under the decoder outputs."""
    return PIXEL_LIKELIHOODS[self.likelihood].log_prob(outputs, x)

  @nn.compact
  def __call__(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    del x  # Not autoregressive: the output depends on z alone.
    height, width, channels = self.output_shape
    check_patch_size(self.output_shape, self.patch_size)
    num_patches = (height // self.patch_size) * (width // self.patch_size)
    batch = z.shape[0]
    memory = nn.Dense(self.num_memory_tokens * self.width, dtype=self.dtype, name="memory")(z)
    memory = memory.reshape(batch, self.num_memory_tokens, self.width)
    for _ in range(self.num_layers):
      memory = SelfAttentionBlock(self.num_heads, self.mlp_ratio, self.dtype)(memory)
    queries = _positions(self, "output_queries", num_patches, self.width)
    queries = jnp.broadcast_to(queries, (batch, num_patches, self.width)).astype(memory.dtype)
    hidden = CrossAttentionBlock(self.num_heads, self.mlp_ratio, self.dtype)(queries, memory)
    hidden = nn.LayerNorm(dtype=self.dtype)(hidden)
    channels *= PIXEL_LIKELIHOODS[self.likelihood].params_per_channel
    patches = nn.Dense(self.patch_size * self.patch_size * channels, dtype=self.dtype,
                       name="logits")(hidden)
    logits = unpatchify(patches, (height, width, channels), self.patch_size)
    return logits, hidden.reshape(batch, -1).astype(jnp.float32)
