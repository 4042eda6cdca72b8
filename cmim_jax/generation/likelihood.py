"""Importance-sampled bounds on log p(x) (IWAE, Burda et al., arXiv:1509.00519).

With K samples z_k ~ q(z|x) (the encoder, the proposal) and weights
  log w_k = log p(x|z_k) + log P(z_k) - log q(z_k|x),   P(z) = N(0, I),
  L_K(x) = log (1/K) sum_k w_k  <=  log p(x),
L_1 is the (single-sample) ELBO, E[L_K] grows with K and tends to log p(x). The estimate is
computed in chunks of samples (`lax.map` over chunks, each chunk vmapped through the decoder), so
the decoder sees [chunk, B, ...] at a time and K = 1,000 fits memory; the log-sum-exp over all K
is taken at the end.

log p(x|z) is whatever the decoder scores (`AutoEncoder.reconstruct(z, x)["log_px"]`: Bernoulli
pixels, a Gaussian, the teacher-forced token log-likelihood of the SMILES decoder, or a new
decoder's own `log_likelihood`), or a function `log_likelihood(logits, x) -> [B]` passed in.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cmim_jax import losses
from cmim_jax.errors import ConfigError
from cmim_jax.generation import batched

LogLikelihoodGivenZ = Callable[[jax.Array, jax.Array], jax.Array]  # (z [B, D], x [B, ...]) -> [B]


def importance_weighted_bound(key: jax.Array, x: jax.Array, mu: jax.Array, logvar: jax.Array,
                              log_px_given_z: LogLikelihoodGivenZ, num_samples: int,
                              chunk_size: int | None = None) -> dict[str, jax.Array]:
  """The K-sample importance-weighted bound L_K(x) with proposal q(z|x) = N(mu, diag(exp(logvar))).

  Args:
    key: PRNG key of the K samples.
    x: [B, ...] the data the decoder scores.
    mu, logvar: [B, D] the proposal's parameters (the encoder's output at x).
    log_px_given_z: (z [B, D], x [B, ...]) -> log p(x|z) [B].
    num_samples: K >= 1.
    chunk_size: samples per chunk (default min(K, 64)); the last chunk's extra samples are masked.

  Returns:
    bound: [B] L_K(x) in nats.
    elbo: [B] the mean over the K samples of log w_k (an unbiased estimate of the ELBO; equal to
      `bound` when K = 1).
  """
  if num_samples < 1:
    raise ConfigError(f"The likelihood bound needs at least 1 sample, got {num_samples}.")
  chunk = min(num_samples, chunk_size or 64)
  num_chunks = -(-num_samples // chunk)

  def chunk_log_weights(chunk_key):
    eps = jax.random.normal(chunk_key, (chunk, *mu.shape), mu.dtype)
    z = mu + jnp.exp(0.5 * logvar) * eps  # [C, B, D]
    log_px = jax.vmap(log_px_given_z, in_axes=(0, None))(z, x)
    flat_z = z.reshape((-1, z.shape[-1]))
    log_prior = losses.standard_normal_log_prob(flat_z).reshape(z.shape[:2])
    log_q = jax.vmap(losses.gaussian_log_prob, in_axes=(0, None, None))(z, mu, logvar)
    return log_px.astype(log_q.dtype) + log_prior - log_q  # [C, B]

  log_w = jax.lax.map(chunk_log_weights, jax.random.split(key, num_chunks))
  log_w = log_w.reshape((num_chunks * chunk, -1))
  used = (jnp.arange(num_chunks * chunk) < num_samples)[:, None]
  bound = jax.nn.logsumexp(jnp.where(used, log_w, -jnp.inf), axis=0) - math.log(num_samples)
  elbo = jnp.sum(jnp.where(used, log_w, 0.0), axis=0) / num_samples
  return dict(bound=bound, elbo=elbo)


def model_bound_fn(model, num_samples: int, chunk_size: int | None = None,
                   log_likelihood: Callable[[jax.Array, jax.Array], jax.Array] | None = None):
  """`bound(params, x, key) -> {"bound": [B], "elbo": [B]}` for an `AutoEncoder` with a decoder.

  `log_likelihood(logits, x) -> [B]` replaces the decoder's own log p(x|z) when given (e.g. a
  discretised likelihood of the same decoder outputs).
  """
  if model.decoder is None:
    raise ConfigError("This model has no decoder (an encoder-only method such as infonce), so it "
                      "defines no likelihood; bound a method with a decoder.")

  def bound(params, x, key):
    mu, logvar = model.apply({"params": params}, x, method="encode")

    def log_px_given_z(z, x):
      if log_likelihood is None:
        return model.apply({"params": params}, z, x, method="reconstruct")["log_px"]
      logits, _ = model.apply({"params": params}, z, x, method="decode")
      return log_likelihood(logits, x)

    return importance_weighted_bound(key, x, mu, logvar, log_px_given_z, num_samples, chunk_size)

  return bound


def estimate(model, params, inputs: np.ndarray, mesh: Mesh, key: jax.Array, num_samples: int,
             chunk_size: int | None = None, batch_size: int = 256,
             log_likelihood=None) -> dict[str, np.ndarray]:
  """L_K and the ELBO estimate of every row of `inputs` [N, ...]: {"bound": [N], "elbo": [N]}.

  Batches sharded over `mesh`; batch i draws its samples from `fold_in(key, i)`.
  """
  fn = batched.keyed_jit(model_bound_fn(model, num_samples, chunk_size, log_likelihood), mesh)
  return batched.run_keyed(fn, mesh, params, inputs, key, batch_size)


def summarize(bound: np.ndarray, elbo: np.ndarray, dimensions: np.ndarray,
              num_samples: int) -> dict[str, float]:
  """Per-example nats and bits per dimension of the bound (and the ELBO) with a standard error.

  bits/dim = sum_i -L_K(x_i) / (ln 2 * sum_i dims_i): pixels per image, or scored tokens (EOS
  included) per SMILES.
  """
  nll = -np.asarray(bound, np.float64)
  total_dims = float(np.sum(dimensions))
  return {
      "likelihood_num_samples": int(num_samples),
      "likelihood_num_examples": int(len(nll)),
      "nll_bound": float(np.mean(nll)),
      "nll_bound_stderr": float(np.std(nll) / math.sqrt(max(len(nll), 1))),
      "negative_elbo": float(-np.mean(elbo)),
      "bits_per_dim_bound": float(np.sum(nll) / (math.log(2.0) * total_dims)),
  }
