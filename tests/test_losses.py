"""Properties of the loss terms: hand-computed values, identities, invariances, masks, gradients."""

import functools
import math
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from cmim_jax import losses


def _random(shape, seed, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


def _cos_logits_numpy(u, v, temperature):
  u = np.asarray(u, np.float64)
  v = np.asarray(v, np.float64)
  u = u / np.linalg.norm(u, axis=1, keepdims=True)
  v = v / np.linalg.norm(v, axis=1, keepdims=True)
  return u @ v.T / temperature


# ----------------------------------------------------------------------------- hand-computed values


def test_gaussian_log_prob_matches_scipy_formula():
  z = np.array([[0.5, -1.0]])
  mu = np.array([[0.0, 1.0]])
  logvar = np.array([[0.0, math.log(4.0)]])
  expected = (-0.5 * math.log(2 * math.pi) - 0.5 * 0.25
              - 0.5 * math.log(2 * math.pi * 4.0) - 0.5 * 4.0 / 4.0)
  np.testing.assert_allclose(losses.gaussian_log_prob(z, mu, logvar), [expected], rtol=1e-6)


def test_standard_normal_log_prob_is_gaussian_at_zero_mean_unit_variance():
  z = _random((5, 3), 0)
  np.testing.assert_allclose(losses.standard_normal_log_prob(z),
                             losses.gaussian_log_prob(z, jnp.zeros_like(z), jnp.zeros_like(z)),
                             rtol=1e-6)


def test_kl_closed_form_matches_monte_carlo():
  mu = jnp.array([[0.3, -0.7]])
  logvar = jnp.array([[-0.5, 0.4]])
  z = mu + jnp.exp(0.5 * logvar) * _random((200_000, 2), 1)
  monte_carlo = jnp.mean(losses.gaussian_log_prob(z, jnp.broadcast_to(mu, z.shape),
                                                  jnp.broadcast_to(logvar, z.shape))
                         - losses.standard_normal_log_prob(z))
  np.testing.assert_allclose(losses.gaussian_kl_to_standard_normal(mu, logvar)[0], monte_carlo,
                             atol=0.01)


class HandComputedValuesTest(chex.TestCase):
  """The loss terms against NumPy formulas, each run eagerly and under `jit` (chex.variants),
  with the shapes and dtypes of their outputs checked."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("mean", "sum")
  def test_contrastive_log_prob_matches_numpy_formula(self, denominator):
    anchors, latents = _random((6, 4), 2), _random((6, 4), 3)
    s = _cos_logits_numpy(anchors, latents, 0.5)
    off = s.copy()
    np.fill_diagonal(off, -np.inf)
    negatives = np.exp(off).sum(1) / (5 if denominator == "mean" else 1)
    expected = np.diag(s) - np.log(np.exp(np.diag(s)) + negatives)
    got = self.variant(functools.partial(losses.contrastive_log_prob, temperature=0.5,
                                         denominator=denominator))(anchors, latents)
    chex.assert_shape(got, (6,))
    chex.assert_type(got, jnp.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(None, 2)  # Dense, and blockwise over column blocks of 2.
  def test_infonce_matches_numpy_formula(self, block_size):
    u, v = _random((5, 3), 4), _random((5, 3), 5)
    s = _cos_logits_numpy(u, v, 0.2)
    expected = -np.mean(np.diag(s) - np.log(np.exp(s).sum(1)))
    got = self.variant(functools.partial(losses.infonce_loss, temperature=0.2,
                                         block_size=block_size))(u, v)
    chex.assert_shape(got, ())
    chex.assert_type(got, jnp.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_a_mim_vae_and_cmim_compose_their_terms(self):
    log_px = jnp.array([-3.0, -5.0, -4.0])
    mu, logvar, z = _random((3, 2), 6), 0.1 * _random((3, 2), 7), _random((3, 2), 8)
    floored = losses.soft_floor(logvar, losses.LOGVAR_FLOOR)  # The default logvar_floor.
    log_q, log_prior = losses.gaussian_log_prob(z, mu, floored), losses.standard_normal_log_prob(z)
    chex.assert_shape([log_q, log_prior], (3,))
    a_mim = -jnp.mean(log_px + 0.5 * (log_q + log_prior))
    np.testing.assert_allclose(self.variant(losses.a_mim_loss)(log_px, z, mu, logvar), a_mim,
                               rtol=1e-6)
    no_floor = functools.partial(losses.a_mim_loss, logvar_floor=None)
    np.testing.assert_allclose(self.variant(no_floor)(log_px, z, mu, floored), a_mim, rtol=1e-6)
    vae = jnp.mean(-log_px + losses.gaussian_kl_to_standard_normal(mu, logvar))
    np.testing.assert_allclose(self.variant(losses.vae_loss)(log_px, mu, logvar), vae, rtol=1e-6)
    for denominator in ("mean", "sum"):
      contrastive = jnp.mean(losses.contrastive_log_prob(mu, z, temperature=0.3,
                                                         denominator=denominator))
      cmim = self.variant(functools.partial(losses.cmim_loss, temperature=0.3,
                                            denominator=denominator, contrastive_weight=2.5))
      got = cmim(log_px, z, mu, logvar)
      chex.assert_shape(got, ())
      chex.assert_tree_all_finite(got)
      np.testing.assert_allclose(got, a_mim - 2.5 * contrastive, rtol=1e-6)


# ----------------------------------------------------------------------------- identities


@pytest.mark.parametrize("batch_size", [2, 7, 32])
def test_mean_denominator_is_infonce_with_shifted_positive(batch_size):
  anchors, latents = _random((batch_size, 5), 9), _random((batch_size, 5), 10)
  temperature = 0.1
  mean_log_prob = losses.contrastive_log_prob(anchors, latents, temperature=temperature)
  s = _cos_logits_numpy(anchors, latents, temperature)
  shifted = s + np.eye(batch_size) * math.log(batch_size - 1)
  infonce_log_softmax = np.diag(shifted) - np.log(np.exp(shifted).sum(1))
  np.testing.assert_allclose(mean_log_prob, infonce_log_softmax, rtol=1e-5, atol=1e-5)


def test_sum_denominator_is_infonce_log_softmax():
  anchors, latents = _random((8, 3), 11), _random((8, 3), 12)
  per_row = losses.contrastive_log_prob(anchors, latents, temperature=0.2, denominator="sum")
  np.testing.assert_allclose(-jnp.mean(per_row),
                             losses.infonce_loss(anchors, latents, temperature=0.2), rtol=1e-5)


@pytest.mark.parametrize("denominator", ["mean", "sum"])
def test_permutation_equivariance(denominator):
  anchors, latents = _random((9, 4), 13), _random((9, 4), 14)
  perm = np.random.default_rng(0).permutation(9)
  original = losses.contrastive_log_prob(anchors, latents, temperature=0.3,
                                         denominator=denominator)
  permuted = losses.contrastive_log_prob(anchors[perm], latents[perm], temperature=0.3,
                                         denominator=denominator)
  np.testing.assert_allclose(permuted, original[perm], rtol=1e-5, atol=1e-6)


def test_vmap_matches_loop():
  anchors, latents = _random((3, 6, 4), 15), _random((3, 6, 4), 16)
  fn = lambda a, l: losses.contrastive_log_prob(a, l, temperature=0.5)
  batched = jax.vmap(fn)(anchors, latents)
  for i in range(3):
    np.testing.assert_allclose(batched[i], fn(anchors[i], latents[i]), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- masks


def _padded(batch, num_padding, seed):
  garbage = 1e3 * _random((num_padding, *batch.shape[1:]), seed)
  return jnp.concatenate([batch, garbage])


@pytest.mark.parametrize("denominator", ["mean", "sum"])
def test_masked_padded_batch_equals_unpadded_batch(denominator):
  n, pad = 5, 3
  log_px = _random((n,), 17)
  mu, logvar, z = _random((n, 4), 18), 0.1 * _random((n, 4), 19), _random((n, 4), 20)
  mask = jnp.arange(n + pad) < n
  kwargs = dict(temperature=0.2, denominator=denominator)
  np.testing.assert_allclose(
      losses.cmim_loss(_padded(log_px, pad, 21), _padded(z, pad, 22), _padded(mu, pad, 23),
                       _padded(logvar, pad, 24), mask=mask, **kwargs),
      losses.cmim_loss(log_px, z, mu, logvar, **kwargs), rtol=1e-5)
  padded_log_prob = losses.contrastive_log_prob(_padded(mu, pad, 23), _padded(z, pad, 22),
                                                mask=mask, **kwargs)
  np.testing.assert_allclose(padded_log_prob[:n], losses.contrastive_log_prob(mu, z, **kwargs),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(padded_log_prob[n:], 0.0)
  np.testing.assert_allclose(
      losses.vae_loss(_padded(log_px, pad, 21), _padded(mu, pad, 23), _padded(logvar, pad, 24),
                      mask=mask),
      losses.vae_loss(log_px, mu, logvar), rtol=1e-5)
  np.testing.assert_allclose(
      losses.infonce_loss(_padded(mu, pad, 23), _padded(z, pad, 22), temperature=0.2, mask=mask),
      losses.infonce_loss(mu, z, temperature=0.2), rtol=1e-5)


def test_masked_gradients_are_finite_and_zero_on_padding():
  mask = jnp.arange(6) < 4
  mu, z = _random((6, 3), 25), _random((6, 3), 26)
  grad = jax.grad(lambda m: jnp.sum(losses.contrastive_log_prob(m, z, temperature=0.1,
                                                                 mask=mask)))(mu)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[4:], 0.0)
  grad_infonce = jax.grad(lambda m: losses.infonce_loss(m, z, temperature=0.1, mask=mask))(mu)
  assert np.all(np.isfinite(grad_infonce))
  np.testing.assert_array_equal(grad_infonce[4:], 0.0)


# ----------------------------------------------------------------------------- errors


def test_fewer_than_two_rows_raise_at_trace_time():
  one = jnp.ones((1, 3))
  with pytest.raises(ValueError, match="at least 2 rows"):
    jax.jit(lambda a: losses.contrastive_log_prob(a, a, temperature=0.1))(one)
  with pytest.raises(ValueError, match="at least 2 rows"):
    losses.infonce_loss(one, one, temperature=0.1)


def test_fewer_than_two_valid_rows_in_a_concrete_mask_raise():
  x = _random((4, 3), 27)
  with pytest.raises(ValueError, match="2 valid rows; the mask marks 1"):
    losses.contrastive_log_prob(x, x, temperature=0.1, mask=jnp.array([1, 0, 0, 0], bool))


def test_fewer_than_two_valid_rows_under_jit_give_nan_not_a_number():
  x = _random((4, 3), 28)
  fn = jax.jit(lambda m: losses.cmim_loss(jnp.zeros(4), x, x, x, temperature=0.1, mask=m))
  assert np.isnan(fn(jnp.array([1, 0, 0, 0], bool)))
  assert np.isfinite(fn(jnp.array([1, 1, 0, 0], bool)))


def test_bad_shapes_and_denominator_raise_clear_errors():
  x = _random((4, 3), 29)
  with pytest.raises(ValueError, match="mask must have shape"):
    losses.vae_loss(jnp.zeros(4), x, x, mask=jnp.ones(5, bool))
  with pytest.raises(ValueError, match="same shape"):
    losses.contrastive_log_prob(x, x[:, :2], temperature=0.1)
  with pytest.raises(ValueError, match="denominator must be one of"):
    losses.contrastive_log_prob(x, x, temperature=0.1, denominator="max")


# ----------------------------------------------------------------------------- numerics


def test_bfloat16_inputs_accumulate_in_float32():
  a, b = _random((16, 8), 30, jnp.bfloat16), _random((16, 8), 31, jnp.bfloat16)
  out = losses.contrastive_log_prob(a, b, temperature=0.1)
  chex.assert_type(out, jnp.float32)
  reference = losses.contrastive_log_prob(a.astype(jnp.float32), b.astype(jnp.float32),
                                          temperature=0.1)
  np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)
  chex.assert_type(losses.gaussian_log_prob(a, a, a), jnp.float32)


@pytest.mark.parametrize("block_size", [None, 3])  # Dense, and blockwise (test_blockwise_losses).
@pytest.mark.parametrize("denominator", ["mean", "sum"])
def test_finite_values_and_gradients_at_low_temperature_near_unit_cosines(denominator, block_size):
  base = _random((8, 4), 32)
  anchors = jnp.concatenate([base[:4], -base[:4]])  # Cosines of exactly +1 and -1 across rows.
  latents = anchors + 1e-6 * _random((8, 4), 33)
  def total(a, l):
    return jnp.sum(losses.contrastive_log_prob(a, l, temperature=0.01, denominator=denominator,
                                               block_size=block_size))
  value, grads = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(anchors, latents)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)
  infonce_grads = jax.jit(jax.grad(lambda a: losses.infonce_loss(
      a, latents, temperature=0.01, block_size=block_size)))(anchors)
  assert np.all(np.isfinite(infonce_grads))


def test_gradients_match_finite_differences_in_float64():
  with jax.enable_x64(True):
    log_px = jax.random.normal(jax.random.key(0), (5,), jnp.float64)
    mu = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
    logvar = 0.3 * jax.random.normal(jax.random.key(2), (5, 3), jnp.float64)
    z = jax.random.normal(jax.random.key(3), (5, 3), jnp.float64)
    mask = jnp.array([True, True, True, True, False])
    for denominator in ("mean", "sum"):
      fn = lambda lp, zz, m, lv, d=denominator: losses.cmim_loss(
          lp, zz, m, lv, temperature=0.5, denominator=d, mask=mask)
      assert fn(log_px, z, mu, logvar).dtype == jnp.float64
      check_grads(fn, (log_px, z, mu, logvar), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
    check_grads(lambda u, v: losses.infonce_loss(u, v, temperature=0.5), (mu, z), order=1,
                modes=("rev",), atol=1e-6, rtol=1e-6)
    check_grads(lambda lp, m, lv: losses.vae_loss(lp, m, lv), (log_px, mu, logvar), order=1,
                modes=("rev",), atol=1e-6, rtol=1e-6)


def test_mean_term_settles_while_sum_term_falls_like_minus_log_batch():
  """For i.i.d. random anchors and latents, E[log p] under "mean" converges as B grows, while
  under "sum" it keeps dropping by about log(B2 / B1)."""
  batch_sizes = [64, 256, 1024]
  means, sums = [], []
  for b in batch_sizes:
    anchors, latents = _random((b, 8), 100 + b), _random((b, 8), 200 + b)
    means.append(float(jnp.mean(losses.contrastive_log_prob(anchors, latents, temperature=0.5))))
    sums.append(float(jnp.mean(losses.contrastive_log_prob(anchors, latents, temperature=0.5,
                                                           denominator="sum"))))
  for i in range(len(batch_sizes) - 1):
    step = math.log(batch_sizes[i + 1] / batch_sizes[i])  # log 4 = 1.39
    assert abs(means[i + 1] - means[i]) < 0.1 * step, means
    np.testing.assert_allclose(sums[i] - sums[i + 1], step, rtol=0.15)


def test_module_imports_jax_only():
  code = ("import sys; import cmim_jax.losses; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'orbax', "
          "'ml_collections', 'sklearn') or (m.startswith('cmim_jax.') and m != 'cmim_jax.losses')]; "
          "print(bad); assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
