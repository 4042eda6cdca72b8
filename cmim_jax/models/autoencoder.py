"""The auto-encoder wrapper: encoder q(z|x), decoder p(x|z), and the prior P(z) = N(0, I)."""

from __future__ import annotations

import flax.linen as nn
import jax

from cmim_jax.models.gaussian import reparameterize


class AutoEncoder(nn.Module):
  """Pairs a Gaussian encoder with a decoder.

  `__call__(x, key)` returns a dict of named tensors (B = batch, D = latent size, H = hidden):
    mu, logvar: [B, D]   parameters of q(z|x)
    z:          [B, D]   reparameterised sample of q(z|x)
    logits:     [B, ...] decoder output at z (parameters of p(x|z))
    hidden:     [B, H]   decoder activation before its output layer (informative embedding)
  """

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x [B, ...] -> (mu [B, D], logvar [B, D])."""
    return self.encoder(x)

  def decode(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """z [B, D] -> (logits [B, ...], hidden [B, H])."""
    return self.decoder(z)

  def __call__(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    mu, logvar = self.encode(x)
    z = reparameterize(key, mu, logvar)
    logits, hidden = self.decode(z)
    return dict(mu=mu, logvar=logvar, z=z, logits=logits, hidden=hidden)
