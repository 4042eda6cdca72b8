"""Your own images: NumPy archives, folders of image files, and TensorFlow Datasets by name.

Each loader reads `data` config fields and returns an `mnist.ImageDataset` (uint8 [N, H, W, C]
images, labels or None, and a validation split when the source has one), the form every image task
trains, evaluates and embeds from. `data.name` picks the loader (`LOADERS`):

  npz           `data.data_dir` is a .npz archive holding either `train_images`, `test_images`
                (+ optional `val_images`) with matching `*_labels` (the MedMNIST layout), or one
                `images` (+ optional `labels`) pair cut into splits by `data.test_fraction` and
                `data.val_fraction`. Images uint8, or floats in [0, 1] (scaled by 255) or
                [0, 255], shaped [N, H, W] or [N, H, W, C]. Labels int [N], [N, 1], or [N, L]
                (multi-label, kept for the probes). Read with allow_pickle=False.
  image_folder  `data.data_dir` is a folder of image files (PNG, JPEG, ... read by Pillow): one
                subfolder per class (labels = sorted class names) or files directly in it (no
                labels); optionally `train/`, `val/`, `test/` subfolders each laid out so, else
                split by fractions. Every image is converted to `data.channels` (1 grey, 3 RGB;
                0: a trained model's, else those of the first image) and resized to
                `data.image_size` pixels a side (0: a trained model's size, else keep, and all must then share one
                size). Files that are not images, or that Pillow cannot read,
                are skipped and counted by cause (`ImageDataset.input_rows`).
  tfds          `data.tfds_name` from TensorFlow Datasets (`pip install 'cmim-jax[tfds]'`), splits
                `data.train_split` / `data.test_split` / `data.val_split` and feature keys
                `data.image_key` / `data.label_key` ("" = no labels).
Splits cut by fraction use a fixed permutation (seed 0), so every run and embedding sees the same.
"""

from __future__ import annotations

import collections
import pathlib
import zipfile
from typing import Callable, Mapping

import ml_collections
import numpy as np
from absl import logging

from cmim_jax.data.mnist import ImageDataset
from cmim_jax.errors import ConfigError, DataError, MissingInputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm", ".pbm"})
SPLITS = ("train", "val", "test")
_Split = tuple[np.ndarray, np.ndarray | None]  # (uint8 images [N, H, W, C], labels or None)


def as_uint8_images(images: np.ndarray, where: str) -> np.ndarray:
  """uint8 [N, H, W, C] from images [N, H, W] or [N, H, W, C]: uint8 kept; other integers in
  [0, 255] cast; floats scaled by 255 when within [0, 1], else taken as intensities in [0, 255]."""
  images = np.asarray(images)
  if images.ndim not in (3, 4) or images.shape[0] == 0:
    raise DataError(f"{where}: expected images [N, H, W] or [N, H, W, C] with N >= 1, got shape "
                    f"{images.shape}.")
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype == np.uint8:
    return images
  if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
    raise DataError(f"{where}: images of dtype {images.dtype}; store uint8 or float pixels.")
  low, high = float(np.min(images)), float(np.max(images))
  if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
    raise DataError(f"{where}: pixel values span [{low}, {high}]; store uint8 intensities, or "
                    "floats in [0, 1] or [0, 255].")
  if np.issubdtype(images.dtype, np.floating) and high <= 1.0:
    images = images * 255.0
  return np.round(images).astype(np.uint8)


def as_labels(labels: np.ndarray | None, num_images: int, where: str) -> np.ndarray | None:
  """int32 [N] from labels [N] or [N, 1]; int32 [N, L] for multi-label [N, L]; checked against N."""
  if labels is None:
    return None
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim not in (1, 2) or len(labels) != num_images:
    raise DataError(f"{where}: labels of shape {labels.shape} for {num_images} images; store one "
                    "label per image ([N] or [N, 1]) or one row of labels per image ([N, L]).")
  if not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
    raise DataError(f"{where}: labels must be whole numbers (class indices), got {labels.dtype}.")
  return labels.astype(np.int32)


def split_by_fraction(images: np.ndarray, labels: np.ndarray | None, test_fraction: float,
                      val_fraction: float) -> dict[str, _Split]:
  """Cuts one set into train / val / test by a fixed permutation (seed 0); val only when
  `val_fraction` > 0. Each part keeps at least one example."""
  num = len(images)
  num_test = max(1, int(round(num * test_fraction)))
  num_val = int(round(num * val_fraction))
  if num - num_test - num_val < 1:
    raise DataError(f"{num} images cannot be cut into {test_fraction:.0%} test and "
                    f"{val_fraction:.0%} validation with training images left; add images or "
                    "lower data.test_fraction / data.val_fraction.")
  order = np.random.default_rng(0).permutation(num)
  parts = {"test": order[:num_test], "val": order[num_test:num_test + num_val],
           "train": order[num_test + num_val:]}
  return {split: (images[rows], None if labels is None else labels[rows])
          for split, rows in parts.items() if len(rows)}


def _dataset(splits: Mapping[str, _Split], source: str,
             input_rows: Mapping[str, object] | None = None) -> ImageDataset:
  shapes = {split: images.shape[1:] for split, (images, _) in splits.items()}
  if len(set(shapes.values())) > 1:
    raise DataError(f"{source}: the splits hold images of different shapes {shapes}; every "
                    "split needs the same [H, W, C].")
  labelled = {split: labels is not None for split, (_, labels) in splits.items()}
  if len(set(labelled.values())) > 1:
    raise DataError(f"{source}: some splits have labels and others not ({labelled}); label all "
                    "or none.")
  val_images, val_labels = splits.get("val", (None, None))
  return ImageDataset(splits["train"][0], splits["train"][1], splits["test"][0],
                      splits["test"][1], source, val_images=val_images, val_labels=val_labels,
                      input_rows=dict(input_rows or {}))


# ----------------------------------------------------------------------------- npz


def load_npz(data: ml_collections.ConfigDict) -> ImageDataset:
  """The `npz` source (module docstring); `data.data_dir` is the archive."""
  path = pathlib.Path(data.data_dir)
  if not path.is_file():
    raise MissingInputError(f"data.data_dir={str(path)!r} is not a file; point it at a .npz "
                            "archive, e.g. --config.data.data_dir=/path/to/pathmnist.npz.")
  try:
    archive = np.load(path, allow_pickle=False)
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise DataError(f"{path} is not a readable .npz archive ({e}); write it with np.savez.") from e
  with archive:
    keys = set(archive.files)

    def read(name: str) -> np.ndarray | None:
      if name not in keys:
        return None
      try:
        return archive[name]
      except ValueError as e:  # Object arrays, which would need unpickling.
        raise DataError(f"{path}: array {name!r} cannot be read without unpickling ({e}); store "
                        "plain numeric arrays.") from e

    if {"train_images", "test_images"} <= keys:
      splits = {}
      for split in SPLITS:
        if f"{split}_images" in keys:
          where = f"{path}[{split}_images]"
          images = as_uint8_images(read(f"{split}_images"), where)
          splits[split] = (images, as_labels(read(f"{split}_labels"), len(images),
                                             f"{path}[{split}_labels]"))
    elif "images" in keys:
      images = as_uint8_images(read("images"), f"{path}[images]")
      labels = as_labels(read("labels"), len(images), f"{path}[labels]")
      splits = split_by_fraction(images, labels, data.get("test_fraction", 0.2),
                                 data.get("val_fraction", 0.0))
    else:
      raise DataError(
          f"{path} holds {sorted(keys)} but needs 'train_images' and 'test_images' (+ optional "
          "'val_images' and '*_labels'; the MedMNIST layout) or one 'images' array (+ optional "
          "'labels'); rename the arrays with np.savez(path, train_images=..., ...).")
  return _dataset(splits, f"npz:{path}")


# ----------------------------------------------------------------------------- image folders


def _read_image(path: pathlib.Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
  """One image file -> uint8 [H, W, channels], resized (bilinear) to size = (H, W) when given."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as image:
    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and image.size != (size[1], size[0]):
      image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, np.uint8)
  return array.reshape(*array.shape[:2], channels)


def _image_size(data: ml_collections.ConfigDict) -> tuple[int, int] | None:
  """(H, W): a square of `data.image_size`; else that of a trained model's saved
  `data.image_shape`, so other images embed at its size; else None (keep the files' size)."""
  if data.get("image_size", 0):
    return int(data.image_size), int(data.image_size)
  trained = tuple(data.get("image_shape") or ())
  return (int(trained[0]), int(trained[1])) if trained else None


def _first_channels(files: list[pathlib.Path]) -> int:
  """1 when the first readable image is greyscale, else 3."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  for path in files:
    try:
      with Image.open(path) as image:
        return 1 if image.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    except (OSError, ValueError):
      continue
  return 1


def _list_split(folder: pathlib.Path, skipped: collections.Counter
                ) -> tuple[list[pathlib.Path], list[str] | None]:
  """(image files, their class names or None) of one split folder: a subfolder per class, or
  the files directly in it when it has no subfolders. Other files are counted in `skipped`."""
  subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
  if not subfolders:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped["not_an_image_file"] += len(files) - len(images)
    return images, None
  stray = [p for p in folder.iterdir() if p.is_file()]
  skipped["outside_a_class_folder"] += len(stray)
  files, classes = [], []
  for subfolder in subfolders:
    for path in sorted(p for p in subfolder.rglob("*") if p.is_file()):
      if path.suffix.lower() in IMAGE_SUFFIXES:
        files.append(path)
        classes.append(subfolder.name)
      else:
        skipped["not_an_image_file"] += 1
  return files, classes


def load_image_folder(data: ml_collections.ConfigDict) -> ImageDataset:
  """The `image_folder` source (module docstring); `data.data_dir` is the folder."""
  root = pathlib.Path(data.data_dir)
  if not root.is_dir():
    raise MissingInputError(f"data.data_dir={str(root)!r} is not a folder; point it at a folder "
                            "of images (one subfolder per class), e.g. "
                            "--config.data.data_dir=/path/to/images.")
  skipped = collections.Counter()
  split_dirs = {split: root / split for split in SPLITS if (root / split).is_dir()}
  has_splits = {"train", "test"} <= set(split_dirs)
  listed = {split: _list_split(folder, skipped) for split, folder in
            (split_dirs.items() if has_splits else [("all", root)])}
  all_files = [p for files, _ in listed.values() for p in files]
  if not all_files:
    raise DataError(f"{root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}); put "
                    "them in it, one subfolder per class.")
  class_names = sorted({c for _, classes in listed.values() for c in classes or ()})
  channels = (data.get("channels", 0) or tuple(data.get("image_shape") or (0, 0, 0))[2]
              or _first_channels(all_files))
  size = _image_size(data)
  arrays, read_size = {}, {}
  for split, (files, classes) in listed.items():
    images, labels = [], []
    for i, path in enumerate(files):
      try:
        image = _read_image(path, channels, size)
      except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for broken files.
        if not skipped["unreadable_image"]:
          logging.warning("Skipping unreadable image %s (%s); further ones are only counted.",
                          path, e)
        skipped["unreadable_image"] += 1
        continue
      first = read_size.setdefault("first", (path, image.shape))
      if image.shape != first[1]:
        raise DataError(
            f"{root}: images of different sizes, {first[0]} is {first[1][0]}x{first[1][1]} and "
            f"{path} is {image.shape[0]}x{image.shape[1]}; set --config.data.image_size=SIZE to "
            "resize them all.")
      images.append(image)
      if classes is not None:
        labels.append(class_names.index(classes[i]))
    if not images:
      raise DataError(f"{root}: no readable image in the {split} split ({dict(skipped)} skipped).")
    arrays[split] = (np.stack(images), np.asarray(labels, np.int32) if classes is not None
                     else None)
  if not has_splits:
    images, labels = arrays.pop("all")
    arrays = split_by_fraction(images, labels, data.get("test_fraction", 0.2),
                               data.get("val_fraction", 0.0))
  kept = sum(len(images) for images, _ in arrays.values())
  skipped = +skipped  # Drops the causes counted zero times.
  input_rows = {"files": kept + skipped["unreadable_image"], "kept": kept,
                "skipped": dict(sorted(skipped.items())), "classes": class_names}
  if skipped:
    logging.warning("%s: skipped %s.", root, dict(skipped))
  return _dataset(arrays, f"image_folder:{root}", input_rows)


# ----------------------------------------------------------------------------- tfds


def tfds_split(tfds_module, name: str, split: str, image_key: str, label_key: str,
               data_dir: str | None) -> _Split:
  """One split of a TensorFlow Datasets image set as (uint8 images, labels or None)."""
  try:
    arrays = tfds_module.as_numpy(tfds_module.load(name, split=split, batch_size=-1,
                                                   data_dir=data_dir or None))
  except Exception as e:  # tfds raises many types (not found, no network, bad split).
    raise DataError(f"tfds could not load {name!r} split {split!r}: {e}") from e
  where = f"tfds:{name}[{split}]"
  missing = [k for k in (image_key, label_key) if k and k not in arrays]
  if missing:
    raise DataError(f"{where} has no feature(s) {missing} (it has {sorted(arrays)}); set "
                    "--config.data.image_key / --config.data.label_key (\"\" = no labels).")
  images = as_uint8_images(arrays[image_key], where)
  return images, as_labels(arrays[label_key] if label_key else None, len(images), where)


def load_tfds(data: ml_collections.ConfigDict) -> ImageDataset:
  """The `tfds` source (module docstring)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConfigError("data.name='tfds' needs tensorflow-datasets; install it with "
                      "pip install 'cmim-jax[tfds]', or export the images to an .npz archive "
                      "and use data.name='npz'.") from e
  if not data.get("tfds_name"):
    raise ConfigError("data.name='tfds' needs data.tfds_name, e.g. "
                      "--config.data.tfds_name=cifar10.")
  if not (data.get("train_split") and data.get("test_split")):
    raise ConfigError("data.name='tfds' needs data.train_split and data.test_split, e.g. "
                      "--config.data.test_split='train[90%:]' when the set has no test split.")
  named = {"train": data.train_split, "test": data.test_split, "val": data.get("val_split", "")}
  splits = {split: tfds_split(tfds, data.tfds_name, name, data.image_key, data.label_key,
                              data.get("data_dir"))
            for split, name in named.items() if name}
  return _dataset(splits, f"tfds:{data.tfds_name}")


LOADERS: dict[str, Callable[[ml_collections.ConfigDict], ImageDataset]] = {
    "npz": load_npz, "image_folder": load_image_folder, "tfds": load_tfds}
