"""The auto-encoder wrapper: encoder q(z|x), decoder p(x|z), and the prior P(z) = N(0, I)."""

from __future__ import annotations

import flax.linen as nn
import jax

from cmim_jax.models.gaussian import reparameterize


class AutoEncoder(nn.Module):
  """Pairs a Gaussian encoder with a decoder.

  The decoder is called as `decoder(z, x)` and returns `(logits, hidden)`; non-autoregressive
  decoders ignore x, autoregressive ones use it for teacher forcing. It also provides
  `log_likelihood(logits, x) -> [B]`.

  `__call__(x, key)` returns a dict of named tensors (B = batch, D = latent size, H = hidden):
    mu, logvar: [B, D]   parameters of q(z|x)
    z:          [B, D]   reparameterised sample of q(z|x)
    logits:     [B, ...] decoder output at z (parameters of p(x|z))
    hidden:     [B, H]   decoder state before its output layer, as one vector per example
                         (at z = mu this is the informative embedding)
    log_px:     [B]      log p(x|z)
  """

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x [B, ...] -> (mu [B, D], logvar [B, D])."""
    return self.encoder(x)

  def decode(self, z: jax.Array, x: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """z [B, D] (and x for teacher forcing) -> (logits [B, ...], hidden [B, H])."""
    return self.decoder(z, x)

  def reconstruct(self, z: jax.Array, x: jax.Array) -> dict[str, jax.Array]:
    """Decodes z and scores x under p(x|z): logits, hidden [B, H] and log_px [B]."""
    logits, hidden = self.decode(z, x)
    hidden = hidden.reshape((hidden.shape[0], -1))
    return dict(logits=logits, hidden=hidden, log_px=self.decoder.log_likelihood(logits, x))

  def __call__(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    mu, logvar = self.encode(x)
    z = reparameterize(key, mu, logvar)
    return dict(mu=mu, logvar=logvar, z=z, **self.reconstruct(z, x))
