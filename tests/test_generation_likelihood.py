"""The importance-weighted bound on a linear-Gaussian model, whose log p(x) is known in closed form.

Model: z ~ N(0, I_D), x | z ~ N(W z + b, s^2 I_N), so p(x) = N(x; b, W W^T + s^2 I). The proposal
is a diagonal Gaussian with the true posterior mean and 1.5 times its marginal variances: close to,
but not, the posterior (which would make every weight equal), so the bound is strict at K = 1
(0.38 nats below log p(x) or more) and tightens as K grows.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from cmim_jax.generation import likelihood

LATENT, DATA, NOISE = 2, 6, 1.0
INFLATION = 1.5  # Proposal variance / posterior marginal variance (overdispersed, as IS wants).


@pytest.fixture(scope="module")
def linear_gaussian():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(DATA, LATENT)).astype(np.float32)
  b = rng.normal(size=DATA).astype(np.float32)
  x = (rng.normal(size=(5, LATENT)) @ w.T + b + NOISE * rng.normal(size=(5, DATA))).astype(
      np.float32)
  exact = stats.multivariate_normal(b, w @ w.T + NOISE**2 * np.eye(DATA)).logpdf(x)
  precision = np.eye(LATENT) + w.T @ w / NOISE**2
  mean = (np.linalg.solve(precision, w.T @ (x - b).T) / NOISE**2).T
  variance = np.broadcast_to(INFLATION * np.diag(np.linalg.inv(precision)), mean.shape)
  # The ELBO of q = N(mean, diag(variance)), in closed form.
  residual = x - mean @ w.T - b
  trace = np.sum(variance[:, None, :] * w[None] ** 2, axis=(1, 2))
  expected_log_px = (-0.5 * DATA * math.log(2 * math.pi * NOISE**2)
                     - 0.5 * (np.sum(residual**2, 1) + trace) / NOISE**2)
  expected_log_prior = -0.5 * LATENT * math.log(2 * math.pi) - 0.5 * np.sum(mean**2 + variance, 1)
  entropy = 0.5 * np.sum(np.log(2 * math.pi * math.e * variance), 1)
  elbo = expected_log_px + expected_log_prior + entropy

  def log_px_given_z(z, x):
    mu = z @ jnp.asarray(w).T + jnp.asarray(b)
    return jnp.sum(stats_norm_logpdf(x, mu, NOISE), axis=-1)

  return dict(x=x, exact=exact, elbo=elbo, mu=mean.astype(np.float32),
              logvar=np.log(variance).astype(np.float32), log_px_given_z=log_px_given_z)


def stats_norm_logpdf(x, mean, std):
  return -0.5 * math.log(2 * math.pi * std**2) - 0.5 * jnp.square((x - mean) / std)


def _bound(model, key, num_samples, chunk_size=None, copies=1):
  x, mu, logvar = (np.tile(model[k], (copies, 1)) for k in ("x", "mu", "logvar"))
  fn = jax.jit(lambda key: likelihood.importance_weighted_bound(
      key, x, mu, logvar, model["log_px_given_z"], num_samples, chunk_size))
  return jax.tree.map(np.asarray, fn(key))


def test_one_sample_bound_is_the_elbo(linear_gaussian):
  out = _bound(linear_gaussian, jax.random.key(0), 1, copies=4000)
  np.testing.assert_array_equal(out["bound"], out["elbo"])  # Same samples: L_1 = log w_1.
  per_example = out["bound"].reshape(4000, -1)
  stderr = per_example.std(0) / math.sqrt(4000)
  np.testing.assert_array_less(np.abs(per_example.mean(0) - linear_gaussian["elbo"]),
                               4 * stderr + 1e-3)
  assert np.all(linear_gaussian["elbo"] < linear_gaussian["exact"] - 0.05)  # The gap is real.


def test_bound_approaches_exact_log_likelihood(linear_gaussian):
  exact = linear_gaussian["exact"]
  k1000 = _bound(linear_gaussian, jax.random.key(1), 1000, chunk_size=96)  # 11 chunks, 56 masked.
  np.testing.assert_array_less(np.abs(k1000["bound"] - exact), 0.05)
  k10 = _bound(linear_gaussian, jax.random.key(2), 10, copies=200)["bound"].reshape(200, -1)
  stderr = k10.std(0) / math.sqrt(200)
  np.testing.assert_array_less(linear_gaussian["elbo"] + 0.1, k10.mean(0))  # Tighter than L_1...
  np.testing.assert_array_less(k10.mean(0), exact + 3 * stderr)  # ...and a bound in expectation.


def test_chunking_does_not_change_the_bound(linear_gaussian):
  whole = _bound(linear_gaussian, jax.random.key(3), 12, chunk_size=12)
  split = _bound(linear_gaussian, jax.random.key(3), 12, chunk_size=5)
  assert np.all(np.isfinite(split["bound"]))
  # Different chunkings draw different samples; both are estimates of the same value.
  np.testing.assert_allclose(whole["bound"], split["bound"], atol=0.3)


def test_summary_in_nats_and_bits_per_dimension():
  bound = np.array([-2.0 * math.log(2.0), -4.0 * math.log(2.0)])  # 2 and 4 bits.
  out = likelihood.summarize(bound, bound - 1.0, np.array([2, 2]), num_samples=7)
  assert out["nll_bound"] == pytest.approx(3.0 * math.log(2.0))
  assert out["bits_per_dim_bound"] == pytest.approx(6.0 / 4.0)
  assert out["negative_elbo"] == pytest.approx(3.0 * math.log(2.0) + 1.0)
  assert out["likelihood_num_samples"] == 7


def test_too_few_samples_is_a_clear_error(linear_gaussian):
  with pytest.raises(ValueError, match="at least 1 sample"):
    _bound(linear_gaussian, jax.random.key(0), 0)
