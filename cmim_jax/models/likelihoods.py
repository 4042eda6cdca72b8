"""Decoder likelihoods log p(x|z), one per output type.

Pixel likelihoods (`PIXEL_LIKELIHOODS`, chosen by `model.likelihood`) score images x [B, H, W, C]
with values in [0, 1] against a decoder output of K parameters per channel, [B, H, W, C * K]
(channel-major: the K parameters of channel c are entries c*K .. c*K + K - 1):
  bernoulli             K = 1    logits; binarised (or [0, 1]-valued) targets.
  discretized_logistic  K = 2    (mean, log-scale) of a logistic over [-1, 1] whose mass is
                                 binned into the 256 intensities of an 8-bit pixel (PixelCNN++'s
                                 per-pixel term, without the mixture).
  categorical           K = 256  logits of a 256-way softmax per channel (small images).
The discrete ones read x as round(255 x), so augmented (interpolated) inputs are scored at their
nearest intensity. Each is one pure function `log p(x | decoder output) -> [B]`, nats per image.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from cmim_jax import losses
from cmim_jax.models.gaussian import soft_clamp

NUM_INTENSITIES = 256
# Soft bounds of the logistic's log-scale over pixels mapped to [-1, 1] (a bin is 2/255 wide).
LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 2.0


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) for independent Bernoulli pixels with `logits`: [B, ...] x2 -> [B].

  Targets in [0, 1]; continuous intensities give the usual cross-entropy "likelihood".
  """
  log_probs = -optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), x)
  return jnp.sum(log_probs.reshape((x.shape[0], -1)), axis=-1)


def gaussian_log_likelihood(params: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) for a diagonal Gaussian: params [B, 2, ...] stacks (mean, logvar); x [B, ...] -> [B]."""
  batch = x.shape[0]
  mean = params[:, 0].reshape((batch, -1))
  logvar = params[:, 1].reshape((batch, -1))
  return losses.gaussian_log_prob(x.reshape((batch, -1)), mean, logvar)


def intensities(x: jax.Array) -> jax.Array:
  """Pixels in [0, 1] -> the nearest 8-bit intensity, int32 in [0, 255]."""
  return jnp.clip(jnp.round(x.astype(jnp.float32) * 255.0), 0, 255).astype(jnp.int32)


def _per_channel(outputs: jax.Array, x: jax.Array, k: int) -> jax.Array:
  """Decoder outputs [B, H, W, C*k] -> [B, H, W, C, k] (float32), checked against x [B, H, W, C]."""
  if outputs.shape[:-1] != x.shape[:-1] or outputs.shape[-1] != x.shape[-1] * k:
    raise ValueError(f"Decoder outputs {outputs.shape} do not hold {k} parameter(s) per channel of "
                     f"images {x.shape}.")
  return outputs.astype(jnp.float32).reshape((*x.shape, k))


def _log_sigmoid_difference(upper: jax.Array, lower: jax.Array) -> jax.Array:
  """log(sigmoid(upper) - sigmoid(lower)) for upper > lower, without cancellation: evaluated on
  the side of 0 where both sigmoids are small (sigma(a) - sigma(b) = sigma(-b) - sigma(-a))."""
  flip = (upper + lower) > 0
  big = jnp.where(flip, -lower, upper)
  small = jnp.where(flip, -upper, lower)
  log_big = jax.nn.log_sigmoid(big)
  return log_big + jnp.log(-jnp.expm1(jax.nn.log_sigmoid(small) - log_big))


def discretized_logistic_log_likelihood(outputs: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) of 8-bit pixels under per-channel discretised logistics: [B, H, W, 2C] and
  x [B, H, W, C] in [0, 1] -> [B] (nats per image).

  Intensity v in {0..255} maps to y = 2 v / 255 - 1; its bin is [y - 1/255, y + 1/255], the
  first and last bins extending to -inf and +inf, so the 256 probabilities sum to 1.
  """
  params = _per_channel(outputs, x, 2)
  mean = params[..., 0]
  log_scale = soft_clamp(params[..., 1], LOG_SCALE_MIN, LOG_SCALE_MAX)
  value = intensities(x)
  y = 2.0 * value.astype(jnp.float32) / 255.0 - 1.0
  inverse_scale = jnp.exp(-log_scale)
  upper = (y + 1.0 / 255.0 - mean) * inverse_scale
  lower = (y - 1.0 / 255.0 - mean) * inverse_scale
  # Edge bins: log sigma(upper) for v = 0, log(1 - sigma(lower)) = log sigma(-lower) for v = 255.
  log_probs = jnp.where(value == 0, jax.nn.log_sigmoid(upper),
                        jnp.where(value == NUM_INTENSITIES - 1, jax.nn.log_sigmoid(-lower),
                                  _log_sigmoid_difference(upper, lower)))
  return jnp.sum(log_probs.reshape((x.shape[0], -1)), axis=-1)


def categorical_log_likelihood(outputs: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x|z) of 8-bit pixels under a 256-way softmax per channel: [B, H, W, 256C] and
  x [B, H, W, C] in [0, 1] -> [B] (nats per image)."""
  log_probs = jax.nn.log_softmax(_per_channel(outputs, x, NUM_INTENSITIES), axis=-1)
  picked = jnp.take_along_axis(log_probs, intensities(x)[..., None], axis=-1)[..., 0]
  return jnp.sum(picked.reshape((x.shape[0], -1)), axis=-1)


def bernoulli_mean(logits: jax.Array) -> jax.Array:
  """Mean image [B, H, W, C] in [0, 1] of Bernoulli pixels with `logits` [B, H, W, C]."""
  return jax.nn.sigmoid(logits.astype(jnp.float32))


def discretized_logistic_mean(outputs: jax.Array) -> jax.Array:
  """Image [B, H, W, C] in [0, 1] at the logistics' locations; outputs [B, H, W, 2C]."""
  params = outputs.astype(jnp.float32).reshape((*outputs.shape[:-1], -1, 2))
  return (jnp.clip(params[..., 0], -1.0, 1.0) + 1.0) / 2.0


def categorical_mean(outputs: jax.Array) -> jax.Array:
  """Expected intensity / 255 [B, H, W, C] of 256-way softmaxes; outputs [B, H, W, 256C]."""
  logits = outputs.astype(jnp.float32).reshape((*outputs.shape[:-1], -1, NUM_INTENSITIES))
  return jax.nn.softmax(logits, axis=-1) @ (jnp.arange(NUM_INTENSITIES) / 255.0)


@dataclasses.dataclass(frozen=True)
class PixelLikelihood:
  """A decoder likelihood for images.

  Attributes:
    name: the `model.likelihood` value.
    params_per_channel: K, the decoder outputs per image channel.
    log_prob: (outputs [B, H, W, C*K], x [B, H, W, C] in [0, 1]) -> log p(x|z) [B], nats.
    mean: outputs [B, H, W, C*K] -> the image they describe [B, H, W, C] in [0, 1] (for pictures).
    discrete: whether it is a distribution over 8-bit intensities (then bits per dimension are
      comparable across models); Bernoulli scores binarised pixels.
  """

  name: str
  params_per_channel: int
  log_prob: Callable[[jax.Array, jax.Array], jax.Array]
  discrete: bool
  mean: Callable[[jax.Array], jax.Array]


PIXEL_LIKELIHOODS = {
    "bernoulli": PixelLikelihood("bernoulli", 1, bernoulli_log_likelihood, False, bernoulli_mean),
    "discretized_logistic": PixelLikelihood("discretized_logistic", 2,
                                            discretized_logistic_log_likelihood, True,
                                            discretized_logistic_mean),
    "categorical": PixelLikelihood("categorical", NUM_INTENSITIES, categorical_log_likelihood,
                                   True, categorical_mean),
}


def bits_per_dim(nats_per_image: float, num_dims: int) -> float:
  """Nats per image -> bits per dimension (pixel channel)."""
  return nats_per_image / (num_dims * math.log(2.0))
