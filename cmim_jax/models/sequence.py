"""SMILES models: a Perceiver Gaussian encoder and an autoregressive Transformer decoder (MolMIM-like).

Token sequences x are int32 [B, L]: BOS, tokens, EOS, then PAD (id 0). The latent is K x D
Gaussians, flattened to z [B, K*D] for the losses and probes.

The decoder is teacher-forced: it reads x[:, :-1] and predicts x[:, 1:] under a causal mask, with
cross-attention to a memory of K vectors made from z. log p(x|z) sums the token log-probabilities
over the non-padding targets. Its `hidden` output, the final states before the output projection
mean-pooled over those positions, is the informative embedding at z = mu.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from cmim_jax.data.smiles import BOS_ID, EOS_ID, PAD_ID
from cmim_jax.models.attention import DecoderBlock, PerceiverCore
from cmim_jax.models.autoencoder import AutoEncoder, compute_dtype
from cmim_jax.models.gaussian import gaussian_outputs

SEQUENCE_ENCODERS = ("perceiver_seq",)
SEQUENCE_DECODERS = ("transformer_ar",)


def token_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) = sum over non-padding targets t >= 1 of log softmax(logits[:, t-1])[x_t].

  Args:
    logits: [B, L-1, V] next-token logits for the teacher-forced inputs x[:, :-1].
    x: int [B, L] token sequences; targets are x[:, 1:], PAD targets are not scored.

  Returns:
    [B] log-likelihoods (float32).
  """
  targets = x[:, 1:]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(targets != PAD_ID, picked, 0.0), axis=-1)


def _check_tokens(x: jax.Array, max_length: int, who: str) -> None:
  if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"{who} expects integer token ids [B, L], got {x.dtype} {x.shape}.")
  if x.shape[1] > max_length:
    raise ValueError(f"{who} was built for sequences of at most {max_length} tokens, got "
                     f"{x.shape[1]}; raise data.max_length (and retrain) or shorten the inputs.")


class PerceiverSmilesEncoder(nn.Module):
  """x int [B, L] -> (mu [B, K*D], logvar [B, K*D]).

  Token + learned positional embeddings, K latent queries cross-attending to the tokens (padding
  masked) and self-attending (`PerceiverCore`), then per-latent linear maps to D means and
  log-variances (soft-clamped to [logvar_min, logvar_max]). Layers compute in `dtype`
  (parameters stay float32); mu and logvar come out float32.
  """

  vocab_size: int
  max_length: int  # L, BOS and EOS included.
  num_latents: int = 4  # K
  latent_dim: int = 16  # D, per latent.
  width: int = 128
  num_heads: int = 4
  num_layers: int = 2  # Latent self-attention blocks.
  mlp_ratio: int = 4
  logvar_min: float = -8.0
  logvar_max: float = 4.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    _check_tokens(x, self.max_length, "PerceiverSmilesEncoder")
    batch, length = x.shape
    positions = self.param("position_embedding", nn.initializers.normal(0.02),
                           (self.max_length, self.width))
    h = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, name="token_embedding")(x)
    h = h + positions[:length].astype(self.dtype)
    latents = PerceiverCore(self.num_latents, self.width, self.num_heads, self.num_layers,
                            self.mlp_ratio, self.dtype)(h, x != PAD_ID)
    mu = nn.Dense(self.latent_dim, dtype=self.dtype, name="mu")(latents).reshape((batch, -1))
    logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(latents)
    return gaussian_outputs(mu, logvar.reshape((batch, -1)), self.logvar_min, self.logvar_max)


class TransformerSmilesDecoder(nn.Module):
  """(z [B, K*D], x int [B, L]) -> (logits [B, L-1, V], hidden [B, width]).

  Memory: z viewed as K vectors of size D, each mapped to the model width plus a learned
  per-latent embedding. Then causal self-attention over the shifted tokens x[:, :-1] and
  cross-attention to the memory, `num_layers` times, and a final LayerNorm whose output feeds the
  output projection; `hidden` is that output mean-pooled over the non-padding targets (float32).
  Layers compute in `dtype`; the likelihood is computed in float32.
  """

  vocab_size: int
  max_length: int
  num_latents: int = 4
  latent_dim: int = 16
  width: int = 128
  num_heads: int = 4
  num_layers: int = 2
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  log_likelihood = staticmethod(token_log_likelihood)

  @nn.compact
  def __call__(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    if x is None:
      raise ValueError("The autoregressive decoder needs the tokens x for teacher forcing; use "
                       "cmim_jax.models.sequence.greedy_decode to generate from z alone.")
    _check_tokens(x, self.max_length, "TransformerSmilesDecoder")
    batch = z.shape[0]
    if z.shape != (batch, self.num_latents * self.latent_dim):
      raise ValueError(f"z must be [B, K*D] = [B, {self.num_latents * self.latent_dim}], got "
                       f"{z.shape}.")
    memory = nn.Dense(self.width, dtype=self.dtype, name="memory")(
        z.reshape((batch, self.num_latents, self.latent_dim)))
    memory = memory + self.param("memory_embedding", nn.initializers.normal(0.02),
                                 (self.num_latents, self.width)).astype(self.dtype)
    inputs = x[:, :-1]
    positions = self.param("position_embedding", nn.initializers.normal(0.02),
                           (self.max_length, self.width))
    h = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, name="token_embedding")(inputs)
    h = h + positions[:inputs.shape[1]].astype(self.dtype)
    causal = nn.make_causal_mask(inputs)
    for _ in range(self.num_layers):
      h = DecoderBlock(self.num_heads, self.mlp_ratio, self.dtype)(h, memory, causal)
    h = nn.LayerNorm(dtype=self.dtype)(h)
    logits = nn.Dense(self.vocab_size, dtype=self.dtype, name="logits")(h)
    h = h.astype(jnp.float32)
    scored = (x[:, 1:] != PAD_ID)[..., None].astype(h.dtype)
    hidden = jnp.sum(h * scored, axis=1) / jnp.maximum(jnp.sum(scored, axis=1), 1.0)
    return logits, hidden


def greedy_decode(model: AutoEncoder, params, z: jax.Array, length: int) -> jax.Array:
  """Greedy autoregressive decoding: z [B, K*D] -> int32 tokens [B, length] (BOS first).

  Fixed output length; a sequence that has emitted EOS is marked done and padded from then on,
  and the loop stops early once every sequence is done. Each step reruns the decoder on the
  sequence so far (no key/value cache: simple, and cheap at SMILES lengths). jit-compatible.
  """
  return _decode(model, params, z, length, lambda logits, step: jnp.argmax(logits, -1))


def sample_decode(model: AutoEncoder, params, z: jax.Array, length: int, key: jax.Array,
                  temperature: float = 1.0) -> jax.Array:
  """Like `greedy_decode`, but each token drawn from softmax(logits / temperature)."""
  def pick(logits, step):
    return jax.random.categorical(jax.random.fold_in(key, step), logits / temperature, axis=-1)
  return _decode(model, params, z, length, pick)


def _decode(model: AutoEncoder, params, z: jax.Array, length: int, pick) -> jax.Array:
  """The decoding loop: `pick(logits [B, V], step) -> [B]` chooses each next token."""
  batch = z.shape[0]
  tokens = jnp.full((batch, length), PAD_ID, jnp.int32).at[:, 0].set(BOS_ID)

  def not_finished(carry):
    step, _, done = carry
    return (step < length - 1) & ~jnp.all(done)

  def step_fn(carry):
    step, tokens, done = carry
    logits, _ = model.apply({"params": params}, z, tokens, method="decode")
    next_token = pick(jax.lax.dynamic_index_in_dim(logits, step, 1, keepdims=False), step)
    next_token = jnp.where(done, PAD_ID, next_token).astype(jnp.int32)
    tokens = jax.lax.dynamic_update_index_in_dim(tokens, next_token, step + 1, 1)
    return step + 1, tokens, done | (next_token == EOS_ID)

  _, tokens, _ = jax.lax.while_loop(not_finished, step_fn,
                                    (jnp.int32(0), tokens, jnp.zeros((batch,), bool)))
  return tokens


def build_sequence_autoencoder(model_config: ml_collections.ConfigDict, vocab_size: int,
                               max_length: int) -> AutoEncoder:
  """The SMILES AutoEncoder named by `model.encoder` / `model.decoder` for sequences of at most
  `max_length` tokens (BOS and EOS included) over `vocab_size` ids."""
  decoder_name = model_config.get("decoder") or "transformer_ar"
  for kind, name, valid in (("encoder", model_config.encoder, SEQUENCE_ENCODERS),
                            ("decoder", decoder_name, SEQUENCE_DECODERS)):
    if name not in valid:
      raise ValueError(f"model.{kind}={name!r} does not model SMILES; use one of {valid}.")
  shared = dict(vocab_size=vocab_size, max_length=max_length,
                num_latents=model_config.num_latents, latent_dim=model_config.latent_dim,
                width=model_config.width, num_heads=model_config.num_heads,
                mlp_ratio=model_config.mlp_ratio, dtype=compute_dtype(model_config))
  return AutoEncoder(
      PerceiverSmilesEncoder(num_layers=model_config.encoder_layers,
                             logvar_min=model_config.logvar_min,
                             logvar_max=model_config.logvar_max, **shared),
      TransformerSmilesDecoder(num_layers=model_config.decoder_layers, **shared))
