"""Image augmentations: shape, range, determinism per key, and each op's geometry."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmim_jax import config_validation, errors
from cmim_jax.data import augment
from experiments.configs import mnist as mnist_config

ALL_ON = augment.AugmentConfig(max_shift=2, max_rotation_degrees=20.0, erase_probability=0.7,
                               erase_area=(0.05, 0.2), noise_std=0.1)


def _images(batch=8, size=12, channels=1, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, size, size, channels))


def test_full_chain_keeps_shape_dtype_and_range():
  images = _images()
  out = augment.augment_batch(images, jax.random.key(1), ALL_ON)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert not np.allclose(out, images)


def test_deterministic_per_key_and_different_across_keys_and_examples():
  images = _images()
  first = augment.augment_batch(images, jax.random.key(3), ALL_ON)
  again = augment.augment_batch(images, jax.random.key(3), ALL_ON)
  other = augment.augment_batch(images, jax.random.key(4), ALL_ON)
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  # Per-example keys: one image repeated over the batch gets a different augmentation per row.
  repeated = jnp.broadcast_to(images[:1], images.shape)
  out = np.asarray(augment.augment_batch(repeated, jax.random.key(3), ALL_ON))
  assert len({row.tobytes() for row in out}) == len(out)


def test_default_config_and_the_mnist_defaults():
  images = _images()
  np.testing.assert_array_equal(
      augment.augment_batch(images, jax.random.key(0), augment.AugmentConfig()), images)
  # The MNIST config's view augmentations are all on; they are only used for views by default.
  config = mnist_config.get_config()
  from_config = augment.AugmentConfig.from_config(config.augment)
  assert from_config.max_shift > 0 and from_config.max_rotation_degrees > 0
  assert from_config.erase_probability > 0 and from_config.noise_std > 0
  assert config.augment.apply_to_inputs is False


def test_translate_known_values():
  image = np.arange(1, 26, dtype=np.float32).reshape(5, 5, 1)
  out = np.asarray(augment.translate(jnp.asarray(image), 1, -2, max_shift=2))
  expected = np.zeros_like(image)
  expected[1:, :3] = image[:4, 2:]  # Down by 1, left by 2, zeros shifted in.
  np.testing.assert_array_equal(out, expected)


def _shifted(image, dy, dx, pad):
  """numpy reference: image [H, W, C] moved down by dy and right by dx, zero filled."""
  height, width, _ = image.shape
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  return padded[pad - dy:pad - dy + height, pad - dx:pad - dx + width]


def test_random_translation_is_a_shift_within_range():
  images = np.asarray(_images(batch=16))
  config = augment.AugmentConfig(max_shift=2)
  out = np.asarray(augment.augment_batch(jnp.asarray(images), jax.random.key(5), config))
  shifts = set()
  for image, moved in zip(images, out):
    matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
               if np.array_equal(moved, _shifted(image, dy, dx, 2))]
    assert len(matches) == 1
    shifts.add(matches[0])
  assert len(shifts) > 3  # The 16 examples use several different shifts.


def test_resized_crop_known_values():
  ramp = jnp.broadcast_to(jnp.arange(12.0)[:, None, None], (12, 12, 1))  # Pixel (i, j) = i.
  # Rows [2, 8) stretched 2x: output row i samples the input at 2 + (i + 0.5) / 2 - 0.5. Jitted:
  # the box may be traced.
  out = np.asarray(jax.jit(augment.resized_crop)(ramp, 2.0, 0.0, 6.0, 12.0))
  np.testing.assert_allclose(out, np.broadcast_to((1.75 + np.arange(12) / 2)[:, None, None],
                                                  out.shape), atol=1e-5)
  image = _images(batch=1)[0]
  np.testing.assert_allclose(augment.resized_crop(image, 0.0, 0.0, 12.0, 12.0), image, atol=1e-6)


def test_random_resized_crop_off_at_scale_one_and_on_below():
  images = _images(batch=16, size=28)
  np.testing.assert_array_equal(
      augment.augment_batch(images, jax.random.key(0), augment.AugmentConfig(crop_min_scale=1.0)),
      images)
  config = augment.AugmentConfig(crop_min_scale=0.5)
  out = augment.augment_batch(images, jax.random.key(0), config)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  np.testing.assert_array_equal(out, augment.augment_batch(images, jax.random.key(0), config))
  assert not np.allclose(out, augment.augment_batch(images, jax.random.key(1), config))
  repeated = np.asarray(augment.augment_batch(jnp.broadcast_to(images[:1], images.shape),
                                              jax.random.key(0), config))
  assert len({row.tobytes() for row in repeated}) == len(repeated)  # A different box per example.


def test_random_resized_crop_zooms_in_by_the_sampled_area():
  # A centred bright square: a crop of area fraction s (>= min_scale) enlarges it by about 1/s
  # wherever the square stays inside the box.
  images = jnp.zeros((64, 28, 28, 1)).at[:, 10:18, 10:18].set(1.0)
  out = np.asarray(augment.augment_batch(images, jax.random.key(2),
                                         augment.AugmentConfig(crop_min_scale=0.5)))
  mass = out.sum(axis=(1, 2, 3)) / 64.0
  assert np.all(mass <= 1.0 / 0.5 + 0.05)  # Never more than the largest zoom, 1 / min_scale.
  assert np.mean(mass > 1.05) > 0.5  # Most crops zoom in.


def test_random_resized_crop_leaves_the_other_draws_unchanged():
  # A crop of a constant image is that image, so crop + noise must equal the noise alone: the
  # crop draws from its own key and the other ops keep their draws.
  images = jnp.full((8, 12, 12, 1), 0.5)
  noise_only = augment.AugmentConfig(noise_std=0.1)
  with_crop = dataclasses.replace(noise_only, crop_min_scale=0.3)
  np.testing.assert_allclose(augment.augment_batch(images, jax.random.key(3), with_crop),
                             augment.augment_batch(images, jax.random.key(3), noise_only),
                             atol=1e-6)


def test_rotate_matches_rot90_and_zero_is_identity():
  image = _images(batch=1, size=9, channels=2)[0]
  np.testing.assert_allclose(augment.rotate(image, 90.0), np.rot90(np.asarray(image)), atol=1e-5)
  np.testing.assert_allclose(augment.rotate(image, 0.0), image, atol=1e-6)


def test_erasing_zeroes_one_rectangle_within_the_area_bounds():
  images = jnp.ones((32, 20, 20, 1))
  config = augment.AugmentConfig(erase_probability=1.0, erase_area=(0.05, 0.2))
  out = np.asarray(augment.augment_batch(images, jax.random.key(0), config))[..., 0]
  for image in out:
    rows, cols = np.nonzero(image == 0.0)
    assert len(rows) > 0
    box = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert np.all(box == 0.0) and np.sum(image == 0.0) == box.size  # One solid rectangle.
    assert 0.02 <= box.size / image.size <= 0.3  # The area range, up to rounding of the sides.


def test_erasing_probability():
  images = jnp.ones((200, 8, 8, 1))
  config = augment.AugmentConfig(erase_probability=0.3)
  out = np.asarray(augment.augment_batch(images, jax.random.key(0), config))
  erased_fraction = np.mean(np.any(out == 0.0, axis=(1, 2, 3)))
  assert 0.2 < erased_fraction < 0.4


def test_gaussian_noise_statistics_and_clipping():
  images = jnp.concatenate([jnp.full((48, 16, 16, 1), 0.5), jnp.ones((16, 16, 16, 1))])
  out = np.asarray(augment.augment_batch(images, jax.random.key(0),
                                         augment.AugmentConfig(noise_std=0.1)))
  middle = out[:48]  # 0.5 +- 5 std never clips: the noise shows as it is.
  assert abs(middle.mean() - 0.5) < 0.01 and abs(middle.std() - 0.1) < 0.01
  assert out.max() == 1.0 and out.min() >= 0.0  # Bright pixels are clipped at 1.
  assert np.mean(out[48:] == 1.0) > 0.4


@pytest.mark.parametrize("kwargs, field", [
    (dict(crop_min_scale=0.0), "augment.crop_min_scale"),
    (dict(crop_min_scale=1.5), "augment.crop_min_scale"),
    (dict(max_shift=-1), "augment.max_shift"),
    (dict(max_rotation_degrees=200.0), "augment.max_rotation_degrees"),
    (dict(erase_probability=1.5), "augment.erase_probability"),
    (dict(erase_area=(0.3, 0.1)), "augment.erase_area"),
    (dict(noise_std=-0.1), "augment.noise_std"),
])
def test_bad_settings_name_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    augment.AugmentConfig(**kwargs)


def test_config_validation_reports_a_bad_crop_scale():
  config = mnist_config.get_config()
  config.augment.crop_min_scale = 0.0
  with pytest.raises(errors.ConfigError, match="augment.crop_min_scale"):
    config_validation.validate(config, num_devices=1)


def test_configs_without_crop_min_scale_read_as_off():
  config = mnist_config.get_config().augment
  del config["crop_min_scale"]
  assert augment.AugmentConfig.from_config(config).crop_min_scale == 1.0


def test_bad_inputs_say_what_to_change():
  with pytest.raises(ValueError, match="images / 255"):
    augment.augment_batch(jnp.zeros((2, 8, 8, 1), jnp.uint8), jax.random.key(0), ALL_ON)
  with pytest.raises(ValueError, match="smaller than the image"):
    augment.augment_batch(jnp.zeros((2, 4, 4, 1)), jax.random.key(0),
                          augment.AugmentConfig(max_shift=4))
