"""model.dtype=bfloat16: float32 parameters and outputs, finite training, close to float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import objectives, sharding, training
from cmim_jax.models import sequence
from tests.test_methods import BATCH, _config, _task


def _train(config, num_steps=3):
  mesh = sharding.make_data_mesh()
  task = _task(config)
  model, state, step = training.setup(config, objectives.get_method(config.loss.method), task,
                                      mesh, jax.random.key(0))
  batch = jax.device_put({"image": task.train_arrays["image"][:BATCH]},
                         sharding.batch_sharded(mesh))
  outputs = model.apply({"params": state.params}, jnp.asarray(task.example_input),
                        jax.random.key(2))
  losses = []
  for _ in range(num_steps):
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics["loss"]))
  return state.params, outputs, np.array(losses)


@pytest.mark.parametrize("architecture", [
    "mlp", pytest.param("conv", marks=pytest.mark.slow),
    pytest.param("perceiver", marks=pytest.mark.slow)])
def test_bfloat16_trains_finite_and_close_to_float32(architecture):
  config = _config("cmim", architecture)
  params_32, _, losses_32 = _train(config)
  config.model.dtype = "bfloat16"
  params_16, outputs, losses_16 = _train(config)
  assert {p.dtype for p in jax.tree.leaves(params_16)} == {jnp.dtype(jnp.float32)}
  for name in ("mu", "logvar", "z", "hidden", "log_px"):
    assert outputs[name].dtype == jnp.float32, name
  assert np.all(np.isfinite(losses_16))
  # bfloat16 keeps 8 bits of mantissa: the losses agree to about a percent.
  np.testing.assert_allclose(losses_16, losses_32, rtol=2e-2)
  assert not np.array_equal(losses_16, losses_32)  # The layers did compute in bfloat16.


@pytest.mark.slow
def test_sequence_model_in_bfloat16_scores_like_float32():
  config = _config()
  config.model.update(encoder="perceiver_seq", num_latents=2, latent_dim=4, width=16,
                      num_heads=2, mlp_ratio=2, encoder_layers=1, decoder_layers=1)
  x = jax.random.randint(jax.random.key(0), (4, 10), 1, 12).at[:, 8:].set(0)
  model_32 = sequence.build_sequence_autoencoder(config.model, vocab_size=12, max_length=10)
  config.model.dtype = "bfloat16"
  model_16 = sequence.build_sequence_autoencoder(config.model, vocab_size=12, max_length=10)
  params = model_32.init(jax.random.key(1), x, jax.random.key(2))["params"]
  out_32 = model_32.apply({"params": params}, x, jax.random.key(3))
  out_16 = model_16.apply({"params": params}, x, jax.random.key(3))
  for name in ("mu", "z", "hidden", "log_px"):
    assert out_16[name].dtype == jnp.float32, name
  np.testing.assert_allclose(out_16["log_px"], out_32["log_px"], rtol=2e-2)
  assert not np.array_equal(out_16["log_px"], out_32["log_px"])


def test_unknown_dtype_is_rejected():
  config = _config()
  config.model.dtype = "float16"
  with pytest.raises(ValueError, match="model.dtype='float16'; use 'float32' or 'bfloat16'"):
    _task(config).build_model(config.model)
