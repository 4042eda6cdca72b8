"""The blockwise (online log-sum-exp) contrastive terms equal the dense ones, without [B, B] arrays."""

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import losses, sharding


def _random(shape, seed, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


def _term(kind, block_size, mask, temperature):
  """A scalar function of (anchors, latents) that depends on every row of the contrastive term."""
  if kind == "infonce":
    return lambda a, l: losses.infonce_loss(a, l, temperature=temperature, mask=mask,
                                            block_size=block_size)
  def weighted_sum(a, l):
    rows = losses.contrastive_log_prob(a, l, temperature=temperature, denominator=kind, mask=mask,
                                       block_size=block_size)
    return jnp.sum(rows * jnp.linspace(0.5, 1.5, rows.shape[0], dtype=rows.dtype))
  return weighted_sum


def _padded_inputs(batch_size, num_valid, dim, dtype, seed=0):
  """anchors, latents [B, D] whose rows past num_valid are large garbage, and the mask."""
  anchors, latents = _random((batch_size, dim), seed, dtype), _random((batch_size, dim), seed + 1,
                                                                      dtype)
  latents = 0.6 * anchors + 0.4 * latents  # Positives are more similar than negatives.
  rows = jnp.arange(batch_size)[:, None] >= num_valid
  anchors = jnp.where(rows, 1e3 * anchors, anchors)
  latents = jnp.where(rows, -1e3 * latents, latents)
  mask = None if num_valid == batch_size else jnp.arange(batch_size) < num_valid
  return anchors, latents, mask


def _assert_same_as_dense(kind, batch_size, num_valid, block_size, temperature, dtype, tolerance):
  anchors, latents, mask = _padded_inputs(batch_size, num_valid, 5, dtype)
  dense = jax.jit(jax.value_and_grad(_term(kind, None, mask, temperature), argnums=(0, 1)))
  blockwise = jax.jit(jax.value_and_grad(_term(kind, block_size, mask, temperature),
                                         argnums=(0, 1)))
  (dense_value, dense_grads), (value, grads) = dense(anchors, latents), blockwise(anchors, latents)
  assert value.dtype == dtype
  np.testing.assert_allclose(value, dense_value, rtol=tolerance, atol=tolerance)
  for grad, dense_grad in zip(grads, dense_grads):
    np.testing.assert_allclose(grad, dense_grad, rtol=tolerance, atol=tolerance)
  if mask is not None:  # Padding rows get no gradient, as on the dense path.
    np.testing.assert_array_equal(grads[0][num_valid:], 0.0)
    np.testing.assert_array_equal(grads[1][num_valid:], 0.0)


@pytest.mark.parametrize("kind", ["mean", "sum", "infonce"])
@pytest.mark.parametrize("num_valid", [13, 9])
@pytest.mark.parametrize("temperature", [0.05, 1.0])
@pytest.mark.parametrize("block_size", [4, 5])  # 13 rows: 4 blocks with 3 padded columns, or 3.
def test_values_and_gradients_equal_dense_in_float32(kind, num_valid, temperature, block_size):
  _assert_same_as_dense(kind, 13, num_valid, block_size, temperature, jnp.float32, 1e-5)


@pytest.mark.parametrize("kind", ["mean", "sum", "infonce"])
def test_values_and_gradients_equal_dense_in_float64(kind):
  with jax.enable_x64(True):
    for num_valid, temperature in ((11, 0.05), (8, 0.3), (11, 1.0)):
      _assert_same_as_dense(kind, 11, num_valid, 3, temperature, jnp.float64, 1e-10)


def test_rows_equal_dense_at_batch_4096():
  anchors, latents, _ = _padded_inputs(4096, 4096, 64, jnp.float32)
  for denominator in ("mean", "sum"):
    fn = jax.jit(functools.partial(losses.contrastive_log_prob, temperature=0.1,
                                   denominator=denominator),
                 static_argnames="block_size")
    np.testing.assert_allclose(fn(anchors, latents, block_size=512), fn(anchors, latents),
                               rtol=1e-5, atol=1e-5)


def _largest_intermediate(jaxpr) -> int:
  """The most elements of any value in `jaxpr`, its sub-jaxprs (scan bodies, custom VJPs) included."""
  largest = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      largest = max(largest, int(np.prod(var.aval.shape)))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      largest = max(largest, _largest_intermediate(sub))
  return largest


@pytest.mark.parametrize("kind", ["mean", "infonce"])
def test_forward_and_backward_hold_no_batch_by_batch_array(kind):
  batch_size, block_size = 256, 32
  anchors, latents, mask = _padded_inputs(batch_size, 200, 8, jnp.float32)
  grad_fn = jax.grad(_term(kind, block_size, mask, 0.1), argnums=(0, 1))
  largest = _largest_intermediate(jax.make_jaxpr(grad_fn)(anchors, latents).jaxpr)
  assert largest == batch_size * block_size
  dense_fn = jax.grad(_term(kind, None, mask, 0.1), argnums=(0, 1))
  assert _largest_intermediate(jax.make_jaxpr(dense_fn)(anchors, latents).jaxpr) == batch_size ** 2


def test_vmap_matches_loop():
  anchors, latents = _random((3, 10, 4), 2), _random((3, 10, 4), 3)
  fn = lambda a, l: losses.contrastive_log_prob(a, l, temperature=0.5, block_size=4)
  grad_fn = jax.jit(jax.grad(lambda a, l: jnp.sum(fn(a, l))))
  batched = jax.jit(jax.vmap(fn))(anchors, latents)
  batched_grads = jax.jit(jax.vmap(grad_fn))(anchors, latents)
  fn = jax.jit(fn)
  for i in range(3):
    np.testing.assert_allclose(batched[i], fn(anchors[i], latents[i]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched_grads[i], grad_fn(anchors[i], latents[i]), rtol=1e-5,
                               atol=1e-6)


def test_fewer_than_two_valid_rows_under_jit_give_nan():
  x = _random((4, 3), 6)
  for fn in (lambda m: jnp.sum(losses.contrastive_log_prob(x, x, temperature=0.1, mask=m,
                                                           block_size=2)),
             lambda m: losses.infonce_loss(x, x, temperature=0.1, mask=m, block_size=2)):
    assert np.isnan(jax.jit(fn)(jnp.array([1, 0, 0, 0], bool)))
    assert np.isfinite(jax.jit(fn)(jnp.array([1, 1, 0, 0], bool)))


def test_errors_match_the_dense_path():
  x = _random((4, 3), 7)
  with pytest.raises(ValueError, match="at least 2 rows"):
    losses.contrastive_log_prob(x[:1], x[:1], temperature=0.1, block_size=1)
  with pytest.raises(ValueError, match="2 valid rows; the mask marks 1"):
    losses.infonce_loss(x, x, temperature=0.1, mask=jnp.array([1, 0, 0, 0], bool), block_size=2)
  with pytest.raises(ValueError, match="same shape"):
    losses.contrastive_log_prob(x, x[:, :2], temperature=0.1, block_size=2)
  with pytest.raises(ValueError, match="mask must have shape"):
    losses.contrastive_log_prob(x, x, temperature=0.1, mask=jnp.ones(5, bool), block_size=2)
  for bad in (0, -3, 2.5):
    with pytest.raises(ValueError, match="block_size must be a positive int"):
      losses.contrastive_log_prob(x, x, temperature=0.1, block_size=bad)


# ----------------------------------------------------------------------------- across devices


@pytest.mark.parametrize("kind", ["mean", "sum", "infonce"])
@pytest.mark.parametrize("block_size", [None, 5])
def test_rows_split_over_devices_equal_single_device_dense(kind, block_size):
  """Each of 8 devices scores its 3 rows against the all-gathered latents: the same values and
  gradients as the dense term of the whole batch of 24 (mask included)."""
  mesh = sharding.make_data_mesh()
  assert mesh.devices.size == 8
  anchors, latents, mask = _padded_inputs(24, 19, 5, jnp.float32)
  spec = jax.P("data")

  def sharded(a, l):
    if kind == "infonce":
      per_device = lambda a, l, m: losses.infonce_loss(a, l, temperature=0.1, mask=m,
                                                       block_size=block_size, axis_name="data")
      return jax.shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec),
                           out_specs=jax.P())(a, l, mask)
    per_device = lambda a, l, m: losses.contrastive_log_prob(
        a, l, temperature=0.1, denominator=kind, mask=m, block_size=block_size, axis_name="data")
    rows = jax.shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec)(
        a, l, mask)
    return jnp.sum(rows * jnp.linspace(0.5, 1.5, rows.shape[0]))

  dense = jax.jit(jax.value_and_grad(_term(kind, None, mask, 0.1), argnums=(0, 1)))
  value, grads = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1)))(anchors, latents)
  dense_value, dense_grads = dense(anchors, latents)
  np.testing.assert_allclose(value, dense_value, rtol=1e-5, atol=1e-5)
  for grad, dense_grad in zip(grads, dense_grads):
    np.testing.assert_allclose(grad, dense_grad, rtol=1e-5, atol=1e-5)
