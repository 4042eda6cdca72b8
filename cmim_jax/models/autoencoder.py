"""The auto-encoder wrapper: encoder q(z|x), decoder p(x|z), and the prior P(z) = N(0, I)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from cmim_jax.models.gaussian import reparameterize


def compute_dtype(model_config: ml_collections.ConfigDict) -> jnp.dtype:
  """The dtype layers compute in: `model.dtype` ("float32", the default, or "bfloat16" for mixed
  precision; parameters, sampling and losses stay float32)."""
  name = model_config.get("dtype", "float32")
  if name not in ("float32", "bfloat16"):
    raise ValueError(f"model.dtype={name!r}; use 'float32' or 'bfloat16'.")
  return jnp.dtype(name)


class AutoEncoder(nn.Module):
  """Pairs a Gaussian encoder with a decoder and, for the InfoNCE methods, a projection head.

  The decoder is called as `decoder(z, x)` and returns `(logits, hidden)`; non-autoregressive
  decoders ignore x, autoregressive ones use it for teacher forcing. It also provides
  `log_likelihood(logits, x) -> [B]`. `decoder=None` makes an encoder-only model (InfoNCE), which
  has no decoder parameters at all. `projection`, when set, maps encoder means to the space of a
  contrastive loss (`project`).

  `__call__(x, key)` returns a dict of named tensors (B = batch, D = latent size, H = hidden):
    mu, logvar: [B, D]   parameters of q(z|x)
    z:          [B, D]   reparameterised sample of q(z|x)
    logits:     [B, ...] decoder output at z (parameters of p(x|z))       } only with a decoder
    hidden:     [B, H]   decoder state before its output layer, as one     }
                         vector per example (at z = mu this is the         }
                         informative embedding)                            }
    log_px:     [B]      log p(x|z)                                        }
    projection: [B, P]   projection head at mu                             only with a projection
  """

  encoder: nn.Module
  decoder: nn.Module | None
  projection: nn.Module | None = None

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x [B, ...] -> (mu [B, D], logvar [B, D])."""
    return self.encoder(x)

  def project(self, x: jax.Array) -> jax.Array:
    """x [B, ...] -> the projection head at the encoder mean, [B, P]."""
    if self.projection is None:
      raise ValueError("This model has no projection head; only methods that use one "
                       "(Method.uses_projection, e.g. infonce) build it.")
    return self.projection(self.encode(x)[0])

  def decode(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """z [B, D] (and x for teacher forcing) -> (logits [B, ...], hidden [B, H])."""
    if self.decoder is None:
      raise ValueError("This model is encoder-only (its method has no decoder), so it cannot "
                       "decode or reconstruct.")
    return self.decoder(z, x)

  def reconstruct(self, z: jax.Array, x: jax.Array) -> dict[str, jax.Array]:
    """Decodes z and scores x under p(x|z): logits, hidden [B, H] and log_px [B]."""
    logits, hidden = self.decode(z, x)
    hidden = hidden.reshape((hidden.shape[0], -1))
    return dict(logits=logits, hidden=hidden, log_px=self.decoder.log_likelihood(logits, x))

  def __call__(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    mu, logvar = self.encode(x)
    z = reparameterize(key, mu, logvar)
    outputs = dict(mu=mu, logvar=logvar, z=z)
    if self.decoder is not None:
      outputs.update(self.reconstruct(z, x))
    if self.projection is not None:
      outputs["projection"] = self.projection(mu)
    return outputs
