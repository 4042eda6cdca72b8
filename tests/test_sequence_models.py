"""The Perceiver SMILES encoder, the autoregressive decoder and greedy decoding."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cmim_jax.data import smiles as smiles_lib
from cmim_jax.models import sequence

VOCAB = 12
LENGTH = 16  # Model's maximum sequence length (BOS and EOS included).
K, D, WIDTH = 2, 3, 16


def _model():
  config = ml_collections.ConfigDict(dict(
      encoder="perceiver_seq", decoder="transformer_ar", num_latents=K, latent_dim=D, width=WIDTH,
      num_heads=2, encoder_layers=1, decoder_layers=2, mlp_ratio=2, logvar_min=-6.0,
      logvar_max=3.0))
  return sequence.build_sequence_autoencoder(config, VOCAB, LENGTH)


def _tokens(rows, length):
  """Sequences BOS, body, EOS, PAD... int32 [len(rows), length]."""
  out = np.full((len(rows), length), smiles_lib.PAD_ID, np.int32)
  for i, body in enumerate(rows):
    out[i, :len(body) + 2] = [smiles_lib.BOS_ID, *body, smiles_lib.EOS_ID]
  return jnp.asarray(out)


@pytest.fixture(scope="module")
def model_and_params():
  model = _model()
  x = _tokens([[5, 6, 7], [8, 9, 10, 11, 5, 6]], 12)
  params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))["params"]
  return model, params


def test_shapes(model_and_params):
  model, params = model_and_params
  x = _tokens([[5, 6, 7], [8, 9, 10, 11, 5, 6], [5]], 12)
  out = jax.jit(model.apply)({"params": params}, x, jax.random.key(2))
  assert out["mu"].shape == out["logvar"].shape == out["z"].shape == (3, K * D)
  assert out["logits"].shape == (3, 11, VOCAB)
  assert out["hidden"].shape == (3, WIDTH)
  assert out["log_px"].shape == (3,)
  assert np.all(np.asarray(out["log_px"]) < 0)


def test_token_log_likelihood_known_values():
  x = jnp.asarray([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0]])
  # Uniform logits: each scored target costs log V.
  log_px = sequence.token_log_likelihood(jnp.zeros((2, 5, 8)), x)
  np.testing.assert_allclose(log_px, [-3 * np.log(8), -2 * np.log(8)], rtol=1e-6)
  # A large logit on the right token makes the log-likelihood ~0; padding targets never count.
  logits = 20.0 * jax.nn.one_hot(x[:, 1:], 8)
  logits = logits.at[:, :, 0].set(-100.0)  # Whatever the logits say at PAD targets.
  np.testing.assert_allclose(sequence.token_log_likelihood(logits, x), [0.0, 0.0], atol=1e-6)


def test_decoder_is_causal(model_and_params):
  model, params = model_and_params
  x = _tokens([[5, 6, 7, 8, 9, 10]], 12)
  z = jax.random.normal(jax.random.key(3), (1, K * D))
  decode = jax.jit(functools.partial(model.apply, method="decode"))
  logits, _ = decode({"params": params}, z, x)
  changed = x.at[0, 4].set(11)
  changed_logits, _ = decode({"params": params}, z, changed)
  # logits[:, t] predict x[:, t+1] from x[:, :t+1]: unchanged before position 4, changed after.
  np.testing.assert_allclose(logits[:, :4], changed_logits[:, :4], rtol=1e-5, atol=1e-5)
  assert not np.allclose(logits[:, 4:], changed_logits[:, 4:], atol=1e-4)


def test_extra_padding_changes_nothing(model_and_params):
  model, params = model_and_params
  bodies = [[5, 6, 7], [8, 9, 10, 11, 5]]
  short, long = _tokens(bodies, 8), _tokens(bodies, LENGTH)
  embed = jax.jit(lambda x: model.apply({"params": params}, x, jax.random.key(4)))
  a, b = embed(short), embed(long)
  for name in ("mu", "logvar", "z", "hidden", "log_px"):
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_greedy_decode_is_consistent_with_teacher_forcing(model_and_params):
  model, params = model_and_params
  z = 3.0 * jax.random.normal(jax.random.key(7), (4, K * D))
  tokens = np.asarray(jax.jit(functools.partial(sequence.greedy_decode, model, length=LENGTH))(
      params, z))
  assert tokens.shape == (4, LENGTH) and tokens.dtype == np.int32
  assert np.all(tokens[:, 0] == smiles_lib.BOS_ID)
  logits, _ = model.apply({"params": params}, z, jnp.asarray(tokens), method="decode")
  predicted = np.argmax(np.asarray(logits), axis=-1)
  for row, pred in zip(tokens, predicted):
    eos = np.flatnonzero(row == smiles_lib.EOS_ID)
    end = eos[0] if eos.size else LENGTH - 1
    np.testing.assert_array_equal(row[1:end + 1], pred[:end])  # Each token is the argmax.
    assert np.all(row[end + 1:] == smiles_lib.PAD_ID)  # Padded after EOS (the stop mask).


def test_greedy_decode_reconstructs_a_memorised_sequence():
  """A hundred Adam steps on one sequence make greedy decoding reproduce it exactly."""
  model = _model()
  x = _tokens([[5, 6, 7, 8, 9, 10, 11]], 10)
  params = jax.jit(model.init)(jax.random.key(0), x, jax.random.key(1))["params"]
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  def loss(p):
    mu, _ = model.apply({"params": p}, x, method="encode")
    return -jnp.sum(model.apply({"params": p}, mu, x, method="reconstruct")["log_px"])

  @jax.jit
  def step(params, opt_state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, value, grads

  params, opt_state, first_loss, grads = step(params, opt_state)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert np.any(grads["encoder"]["mu"]["kernel"] != 0)  # The loss reaches the encoder.
  for _ in range(99):
    params, opt_state, last_loss, _ = step(params, opt_state)
  assert last_loss < 0.01 * first_loss
  mu, _ = model.apply({"params": params}, x, method="encode")
  decoded = jax.jit(functools.partial(sequence.greedy_decode, model, length=10))(params, mu)
  np.testing.assert_array_equal(decoded, x)


def test_errors_name_the_fix(model_and_params):
  model, params = model_and_params
  with pytest.raises(ValueError, match="data.max_length"):
    model.apply({"params": params}, _tokens([[5]], LENGTH + 1), method="encode")
  with pytest.raises(ValueError, match="integer token ids"):
    model.apply({"params": params}, jnp.zeros((2, 8)), method="encode")
  with pytest.raises(ValueError, match="greedy_decode"):
    model.apply({"params": params}, jnp.zeros((1, K * D)), None, method="decode")
  with pytest.raises(ValueError, match="does not model SMILES"):
    sequence.build_sequence_autoencoder(ml_collections.ConfigDict(dict(encoder="mlp")), 10, 10)
