"""Contrastive methods on 8 devices: each device's rows against all-gathered latents, blockwise or
not, give the single-device dense loss and gradients; the train step takes that path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import config_validation, objectives, sharding, training
from cmim_jax.data import mnist
from cmim_jax.errors import ConfigError
from cmim_jax.tasks import images as image_tasks
from tests.conftest import make_synthetic_digits
from experiments.configs import mnist as mnist_config

BATCH = 16  # 2 rows per device.


def _config(method, block_size):
  config = mnist_config.get_config()
  config.loss.method = method
  config.loss.block_size = block_size
  config.model.latent_dim = 4
  config.model.hidden_sizes = (16,)
  config.loss.projection_hidden = 8
  config.loss.projection_dim = 4
  # The default 100 scales infonce_x's gradients, and their float32 rounding, 100-fold; the
  # sharded and dense paths agree at any weight when they agree at 1.
  config.loss.infonce_weight = 1.0
  config.augment.update(max_shift=1, max_rotation_degrees=0.0, erase_probability=0.0,
                        crop_min_scale=1.0)
  return config


def _task(config):
  images, labels = make_synthetic_digits(BATCH, seed=0, image_size=8)
  dataset = mnist.ImageDataset(images[..., None], labels.astype(np.int32), images[..., None],
                               labels.astype(np.int32), "synthetic")
  return image_tasks.ImageTask(dataset, config)


def _loss_terms_and_grads(method_name, block_size, mesh):
  """The method's jitted (loss, terms) and parameter gradients on one batch; on `mesh` if given."""
  config = _config(method_name, block_size)
  task = _task(config)
  method = objectives.get_method(method_name)
  model = method.build_model(task, config)
  keys = jax.random.split(jax.random.key(0), 4)
  batch = {"image": jnp.asarray(task.train_arrays["image"][:BATCH])}
  x = task.preprocess(batch, keys[0])
  views = task.views(batch, keys[1], method.num_views)
  params = jax.jit(model.init)(keys[2], x, keys[3])["params"]

  def loss_and_grads(params, x, views):
    return jax.value_and_grad(
        lambda p: method.loss_fn(model, p, x, keys[3], config.loss, views), has_aux=True)(params)

  if mesh is None:
    return jax.jit(loss_and_grads)(params, x, views), ""
  rows = sharding.batch_sharded(mesh)
  step = jax.jit(sharding.within_mesh(loss_and_grads, mesh),
                 in_shardings=(sharding.replicated(mesh), rows, rows))
  return step(params, x, views), step.lower(params, x, views).as_text()


@pytest.mark.parametrize("method", ["cmim", "cmim_sum", "cvae", "infonce", "infonce_x"])
def test_contrastive_methods_on_8_devices_equal_single_device_dense(method):
  mesh = sharding.make_data_mesh()
  assert mesh.devices.size == 8
  (dense_loss, dense_terms), dense_grads = _loss_terms_and_grads(method, 0, None)[0]
  for block_size in (0, 3):  # One block of all 16 columns, or 6 blocks (2 padded columns).
    ((loss, terms), grads), hlo = _loss_terms_and_grads(method, block_size, mesh)
    assert "all_gather" in hlo  # Latents gathered, rows kept per device.
    np.testing.assert_allclose(loss, dense_loss, rtol=1e-5, atol=1e-5)
    for name in dense_terms:
      np.testing.assert_allclose(terms[name], dense_terms[name], rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), grads,
                 dense_grads)


def test_single_device_term_has_no_collectives():
  _, hlo = _loss_terms_and_grads("cmim", 4, sharding.make_data_mesh(jax.devices()[:1]))
  assert "all_gather" not in hlo


def test_train_step_on_8_devices_gathers_latents_and_equals_1_device_dense():
  config = _config("cmim", 4)
  task = _task(config)
  method = objectives.get_method("cmim")
  results = {}
  for num_devices, block_size in ((1, 0), (8, 4)):
    config.loss.block_size = block_size
    mesh = sharding.make_data_mesh(jax.devices()[:num_devices])
    _, state, step = training.setup(config, method, task, mesh, jax.random.key(0))
    batch = jax.device_put({"image": task.train_arrays["image"][:BATCH]},
                           sharding.batch_sharded(mesh))
    hlo = step.lower(state, batch, jax.random.key(1)).as_text()
    assert ("all_gather" in hlo) == (num_devices == 8)
    results[num_devices] = jax.device_get(step(state, batch, jax.random.key(1)))
  (params_1, metrics_1), (params_8, metrics_8) = results[1], results[8]
  for name in metrics_1:
    np.testing.assert_allclose(metrics_8[name], metrics_1[name], rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               params_8.params, params_1.params)


def test_config_validation_rejects_a_negative_block_size():
  config = _config("cmim", 0)
  config_validation.validate(config, num_devices=8)
  config.loss.block_size = -2
  with pytest.raises(ConfigError, match=r"loss.block_size=-2: must be an integer >= 0"):
    config_validation.validate(config, num_devices=8)
