"""Transformer building blocks shared by the Perceiver encoders and decoders (images and SMILES).

All blocks are pre-LayerNorm residual blocks. Shapes: B = batch, N = tokens, K = latents,
C = width. Each block computes in its `dtype` (parameters stay float32).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MlpBlock(nn.Module):
  """x [..., C] -> [..., C]: Dense(mlp_ratio * C), GELU, Dense(C)."""

  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    return nn.Dense(width, dtype=self.dtype)(
        nn.gelu(nn.Dense(self.mlp_ratio * width, dtype=self.dtype)(x)))


class CrossAttentionBlock(nn.Module):
  """Queries [B, K, C] attend to inputs [B, N, C_in] (padding masked by `input_mask` [B, N]).

  Returns [B, K, C]: queries + attention, then + MLP.
  """

  num_heads: int = 4
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries: jax.Array, inputs: jax.Array,
               input_mask: jax.Array | None = None) -> jax.Array:
    mask = None if input_mask is None else input_mask[:, None, None, :]
    attended = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=queries.shape[-1], out_features=queries.shape[-1],
        dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(queries),
                          nn.LayerNorm(dtype=self.dtype)(inputs), mask=mask)
    x = queries + attended
    return x + MlpBlock(self.mlp_ratio, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))


class SelfAttentionBlock(nn.Module):
  """x [B, N, C] -> [B, N, C]; `mask` is a boolean [B, 1|heads, N, N] attention mask or None."""

  num_heads: int = 4
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype)(
        nn.LayerNorm(dtype=self.dtype)(x), mask=mask)
    return x + MlpBlock(self.mlp_ratio, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))


class PerceiverCore(nn.Module):
  """Perceiver: K learned latent queries cross-attend to the inputs, then self-attend.

  inputs [B, N, C_in] (already embedded, with positions), input_mask [B, N] or None
  -> latents [B, K, latent_width].
  """

  num_latents: int = 16
  latent_width: int = 128
  num_heads: int = 4
  num_self_attention_layers: int = 2
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, input_mask: jax.Array | None = None) -> jax.Array:
    latents = self.param("latent_queries", nn.initializers.normal(0.02),
                         (self.num_latents, self.latent_width))
    x = jnp.broadcast_to(latents, (inputs.shape[0], *latents.shape)).astype(self.dtype)
    x = CrossAttentionBlock(self.num_heads, self.mlp_ratio, self.dtype)(x, inputs, input_mask)
    for _ in range(self.num_self_attention_layers):
      x = SelfAttentionBlock(self.num_heads, self.mlp_ratio, self.dtype)(x)
    return nn.LayerNorm(dtype=self.dtype)(x)


class DecoderBlock(nn.Module):
  """Transformer decoder block: masked self-attention, cross-attention to a memory, MLP.

  x [B, N, C], memory [B, M, C_mem], self_mask boolean [B, 1|heads, N, N] (e.g. causal) or None
  -> [B, N, C].
  """

  num_heads: int = 4
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, memory: jax.Array,
               self_mask: jax.Array | None = None) -> jax.Array:
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype)(
        nn.LayerNorm(dtype=self.dtype)(x), mask=self_mask)
    x = x + nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_features=x.shape[-1], out_features=x.shape[-1],
        dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(x), nn.LayerNorm(dtype=self.dtype)(memory))
    return x + MlpBlock(self.mlp_ratio, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x))
