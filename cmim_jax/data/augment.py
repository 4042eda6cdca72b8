"""Image augmentations in JAX: the positive pairs of the InfoNCE methods.

Each op maps one image [H, W, C] with pixels in [0, 1] to an image of the same shape, dtype and
range. `augment_batch` gives every example its own key (split from one batch key) and runs the
chain crop -> translate -> rotate -> erase -> noise under `jax.vmap`, jit-compiled. An op whose
strength is 0 in `AugmentConfig` (crop_min_scale 1) is left out at trace time, so the default
config is the identity.

cMIM, MIM and the VAEs need no positive pairs, so the training code applies these ops only to the
views of the methods that ask for them (`Method.num_views`), unless the config says otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections

_LOG_MAX_ERASE_ASPECT = math.log(3.0)  # Erased rectangles have height/width in [1/3, 3].
_LOG_MAX_CROP_ASPECT = math.log(4.0 / 3.0)  # Crops have width/height in [3/4, 4/3] (SimCLR's).


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Strengths of the augmentations; 0 (crop_min_scale: 1) turns an op off (all off by default).

  Attributes:
    crop_min_scale: random resized crop (SimCLR, Chen et al. 2020): a box covering a uniform
      fraction in [crop_min_scale, 1] of the image area, resized back to H x W (bilinear);
      1 = off.
    max_shift: translation: pad by this many zero pixels, crop at a uniform integer offset in
      [-max_shift, max_shift] along each axis.
    max_rotation_degrees: rotation about the centre by a uniform angle in [-max, max] degrees,
      bilinear, zero fill.
    erase_probability: probability of erasing (setting to 0) one random rectangle.
    erase_area: (min, max) fraction of the image area the erased rectangle covers.
    noise_std: standard deviation of additive Gaussian noise; the result is clipped to [0, 1].
  """

  crop_min_scale: float = 1.0
  max_shift: int = 0
  max_rotation_degrees: float = 0.0
  erase_probability: float = 0.0
  erase_area: tuple[float, float] = (0.02, 0.2)
  noise_std: float = 0.0

  def __post_init__(self):
    problems = []
    if not 0.0 < self.crop_min_scale <= 1.0:
      problems.append(f"augment.crop_min_scale must be in (0, 1] (1 = off), got "
                      f"{self.crop_min_scale!r}")
    if not isinstance(self.max_shift, int) or self.max_shift < 0:
      problems.append(f"augment.max_shift must be an integer >= 0, got {self.max_shift!r}")
    if not 0.0 <= self.max_rotation_degrees < 180.0:
      problems.append("augment.max_rotation_degrees must be in [0, 180), got "
                      f"{self.max_rotation_degrees!r}")
    if not 0.0 <= self.erase_probability <= 1.0:
      problems.append(f"augment.erase_probability must be in [0, 1], got {self.erase_probability!r}")
    if (len(self.erase_area) != 2
        or not 0.0 < self.erase_area[0] <= self.erase_area[1] <= 1.0):
      problems.append("augment.erase_area must be (min, max) with 0 < min <= max <= 1, got "
                      f"{self.erase_area!r}")
    if self.noise_std < 0.0:
      problems.append(f"augment.noise_std must be >= 0, got {self.noise_std!r}")
    if problems:
      raise ValueError("Bad augmentation settings: " + "; ".join(problems) + ".")

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> AugmentConfig:
    """Reads the fields of the same names from `config.augment` (crop_min_scale may be absent, as
    in configs saved before it existed: 1, off)."""
    return cls(crop_min_scale=float(config.get("crop_min_scale", 1.0)),
               max_shift=int(config.max_shift),
               max_rotation_degrees=float(config.max_rotation_degrees),
               erase_probability=float(config.erase_probability),
               erase_area=tuple(float(a) for a in config.erase_area),
               noise_std=float(config.noise_std))


def resized_crop(image: jax.Array, top: jax.Array, left: jax.Array, crop_height: jax.Array,
                 crop_width: jax.Array) -> jax.Array:
  """The box [top, top + crop_height) x [left, left + crop_width) of [H, W, C] (real-valued, in
  pixels, inside the image) stretched to H x W by bilinear interpolation: [H, W, C]."""
  height, width, channels = image.shape
  scale = jnp.stack([height / crop_height, width / crop_width]).astype(jnp.float32)
  translation = -jnp.stack([top, left]).astype(jnp.float32) * scale
  return jax.image.scale_and_translate(image, (height, width, channels), (0, 1), scale,
                                       translation, "linear").astype(image.dtype)


def translate(image: jax.Array, shift_rows: jax.Array, shift_cols: jax.Array,
              max_shift: int) -> jax.Array:
  """Moves [H, W, C] down by `shift_rows` and right by `shift_cols` pixels (ints in
  [-max_shift, max_shift]), filling with 0: pad by `max_shift` zeros, crop an H x W window."""
  height, width, channels = image.shape
  if max_shift >= min(height, width):
    raise ValueError(f"augment.max_shift={max_shift} must be smaller than the image ({height}x"
                     f"{width}); lower it.")
  padded = jnp.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  return jax.lax.dynamic_slice(padded, (max_shift - shift_rows, max_shift - shift_cols, 0),
                               (height, width, channels))


def rotate(image: jax.Array, degrees: jax.Array | float) -> jax.Array:
  """Rotates [H, W, C] counter-clockwise (as displayed, rows going down) about its centre.

  Bilinear interpolation; pixels that come from outside the image are 0. `rotate(x, 90)` equals
  `np.rot90(x)` for square images.
  """
  height, width, _ = image.shape
  theta = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  center_y, center_x = (height - 1) / 2.0, (width - 1) / 2.0
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) - center_y,
                            jnp.arange(width, dtype=jnp.float32) - center_x, indexing="ij")
  source_rows = center_y + cos * rows + sin * cols
  source_cols = center_x - sin * rows + cos * cols

  def rotate_channel(channel):
    return jax.scipy.ndimage.map_coordinates(channel, (source_rows, source_cols), order=1,
                                             mode="constant", cval=0.0)

  return jax.vmap(rotate_channel, in_axes=-1, out_axes=-1)(image).astype(image.dtype)


def erase(image: jax.Array, top: jax.Array, left: jax.Array, box_height: jax.Array,
          box_width: jax.Array) -> jax.Array:
  """Sets the rectangle [top, top + box_height) x [left, left + box_width) of [H, W, C] to 0."""
  height, width, _ = image.shape
  rows = jnp.arange(height)[:, None, None]
  cols = jnp.arange(width)[None, :, None]
  inside = (rows >= top) & (rows < top + box_height) & (cols >= left) & (cols < left + box_width)
  return jnp.where(inside, jnp.zeros_like(image), image)


def _uniform_int(u: jax.Array, low, high) -> jax.Array:
  """Maps u ~ U[0, 1) to a uniform integer in [low, high] (bounds may be traced)."""
  return jnp.minimum(low + jnp.floor(u * (high - low + 1)), high).astype(jnp.int32)


def _random_resized_crop(key: jax.Array, image: jax.Array, min_scale: float) -> jax.Array:
  """`resized_crop` of [H, W, C] at a box drawn as `augment_image` describes: [H, W, C]."""
  height, width, _ = image.shape
  u = jax.random.uniform(key, (4,))
  area = (min_scale + u[0] * (1.0 - min_scale)) * height * width
  aspect = jnp.exp((2.0 * u[1] - 1.0) * _LOG_MAX_CROP_ASPECT)
  crop_height = jnp.minimum(jnp.sqrt(area / aspect), height)
  crop_width = jnp.minimum(jnp.sqrt(area * aspect), width)
  return resized_crop(image, u[2] * (height - crop_height), u[3] * (width - crop_width),
                      crop_height, crop_width)


def augment_image(key: jax.Array, image: jax.Array, config: AugmentConfig) -> jax.Array:
  """The configured chain on one image [H, W, C] in [0, 1]: crop, translate, rotate, erase, noise.

  crop: a box of uniform area fraction in [crop_min_scale, 1] and log-uniform aspect ratio
    (width/height) in [3/4, 4/3], its sides clipped to the image, at a uniform position inside it,
    resized back to H x W.
  translate: a uniform integer shift in [-max_shift, max_shift] per axis.
  rotate: a uniform angle in [-max_rotation_degrees, max_rotation_degrees].
  erase (random erasing, Zhong et al. 2020): with probability erase_probability, one rectangle
    covering a uniform fraction in erase_area of the image, with a log-uniform aspect ratio in
    [1/3, 3] (clipped to the image) and a uniform position inside it, is set to 0.
  noise: + N(0, noise_std^2) per pixel, clipped to [0, 1].
  """
  height, width, _ = image.shape
  uniform_key, noise_key = jax.random.split(key)
  u = jax.random.uniform(uniform_key, (8,))  # One draw for every scalar parameter below.
  if config.crop_min_scale < 1.0:
    # Its own key, folded in, so the draws of the other ops stay those they had before the crop.
    image = _random_resized_crop(jax.random.fold_in(key, 1), image, config.crop_min_scale)
  if config.max_shift:
    image = translate(image, _uniform_int(u[0], -config.max_shift, config.max_shift),
                      _uniform_int(u[1], -config.max_shift, config.max_shift), config.max_shift)
  if config.max_rotation_degrees:
    image = rotate(image, (2.0 * u[2] - 1.0) * config.max_rotation_degrees)
  if config.erase_probability:
    low, high = config.erase_area
    pixels = (low + u[3] * (high - low)) * height * width
    aspect = jnp.exp((2.0 * u[4] - 1.0) * _LOG_MAX_ERASE_ASPECT)
    box_height = jnp.clip(jnp.round(jnp.sqrt(pixels * aspect)), 1, height).astype(jnp.int32)
    box_width = jnp.clip(jnp.round(jnp.sqrt(pixels / aspect)), 1, width).astype(jnp.int32)
    erased = erase(image, _uniform_int(u[5], 0, height - box_height),
                   _uniform_int(u[6], 0, width - box_width), box_height, box_width)
    image = jnp.where(u[7] < config.erase_probability, erased, image)
  if config.noise_std:
    noise = config.noise_std * jax.random.normal(noise_key, image.shape, dtype=image.dtype)
    image = jnp.clip(image + noise, 0.0, 1.0)
  return image


@functools.partial(jax.jit, static_argnames="config")
def augment_batch(images: jax.Array, key: jax.Array, config: AugmentConfig) -> jax.Array:
  """Augments images [B, H, W, C] (float pixels in [0, 1]) independently: [B, H, W, C] in [0, 1].

  Example i uses `jax.random.split(key, B)[i]`, so the result is a pure function of (images, key)
  and differs between examples and between keys.
  """
  if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(
        f"augment_batch expects float images [B, H, W, C] with pixels in [0, 1], got "
        f"{images.dtype} {images.shape}; convert uint8 images with images / 255 first.")
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(functools.partial(augment_image, config=config))(keys, images)
