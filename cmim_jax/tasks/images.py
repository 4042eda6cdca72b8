"""Image tasks: MNIST-like sets and your own images (any size and channel count), Bernoulli or
8-bit pixel likelihoods, KNN accuracy of the mean encoding."""

from __future__ import annotations

import copy
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from cmim_jax import models
from cmim_jax.data import augment as augment_lib
from cmim_jax.data import image_sources, mnist
from cmim_jax.embedding import compute as embedding_compute
from cmim_jax.embedding import files as embedding_files
from cmim_jax.errors import ConfigError
from cmim_jax.models import likelihoods
from cmim_jax.tasks.base import Task

IMAGE_DATASETS = (*mnist.SPECS, *image_sources.LOADERS)
# The split scheme of the "all" embedding file of a data set with its own validation split.
GIVEN_SPLIT = "given"


def resolve_likelihood(config: ml_collections.ConfigDict) -> str:
  """The pixel likelihood `model.likelihood` names; "auto" (or unset) follows the data: Bernoulli
  for binarised pixels (`data.binarize`), else the discretised logistic over 8-bit intensities."""
  name = config.model.get("likelihood", "auto") or "auto"
  if name == "auto":
    return "bernoulli" if config.data.binarize else "discretized_logistic"
  return name


def check_image_shape(config: ml_collections.ConfigDict, shape: tuple[int, ...]) -> None:
  """A ConfigError when `config` was saved with a trained model (`data.image_shape`) whose input
  shape is not `shape` = (H, W, C) of the data now loaded."""
  trained = config.data.get("image_shape")
  if trained and tuple(int(d) for d in trained) != tuple(shape):
    h, w, c = (int(d) for d in trained)
    raise ConfigError(
        f"The images of {config.data.name} {config.data.get('data_dir') or ''} are "
        f"{shape[0]}x{shape[1]} with {shape[2]} channel(s), but the model was trained on "
        f"{h}x{w} with {c}; resize or convert them (an image_folder source does so with "
        f"--config.data.image_size={h} --config.data.channels={c}).")


def preprocess_images(images: jax.Array, key: jax.Array, binarize: bool,
                      augment: augment_lib.AugmentConfig | None = None) -> jax.Array:
  """uint8 [B, H, W, C] -> float32 pixels in [0, 1], augmented and then dynamically binarised
  when asked."""
  x = images.astype(jnp.float32) / 255.0
  if augment is not None:
    key, augment_key = jax.random.split(key)
    x = augment_lib.augment_batch(x, augment_key, augment)
  if binarize:
    x = jax.random.bernoulli(key, x).astype(jnp.float32)
  return x


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                 test_labels: np.ndarray, k: int) -> float:
  """Accuracy on test [M, F] (labels [M]) of the k-nearest-neighbour vote fitted on train [N, F]
  (labels [N]): Euclidean distance, uniform weights, features as given (not standardised)."""
  from sklearn.neighbors import KNeighborsClassifier  # pylint: disable=g-import-not-at-top
  # (Imported here: scikit-learn takes seconds to import, which training need not wait for.)
  knn = KNeighborsClassifier(n_neighbors=k).fit(train, train_labels)
  return float(knn.score(test, test_labels))


class ImageTask(Task):
  """An image set (MNIST-like, or your own from `image_sources`); inputs are images
  [B, H, W, C] with pixels in [0, 1], scored by the pixel likelihood `resolve_likelihood` names.

  `config.augment` sets the augmentations of the views (`views`); the training inputs of every
  method are augmented too only when `config.augment.apply_to_inputs` is True.
  """

  def __init__(self, dataset: mnist.ImageDataset, config: ml_collections.ConfigDict):
    check_image_shape(config, dataset.train_images.shape[1:])
    self.dataset = dataset
    self.source = dataset.source
    self.input_rows = dataset.input_rows
    self.likelihood = resolve_likelihood(config)
    if dataset.val_images is not None:
      self.embedding_splits = ("all",)  # Train, val and test rows, with their `split_given`.
    self._binarize = config.data.binarize
    self._augment = augment_lib.AugmentConfig.from_config(config.augment)
    self._augment_inputs = bool(config.augment.apply_to_inputs)
    self._eval_config = config.eval
    self.train_arrays = {"image": dataset.train_images}
    self.example_input = np.zeros((2, *dataset.train_images.shape[1:]), np.float32)

  def build_model(self, model_config):
    return models.build_autoencoder(model_config, self.dataset.train_images.shape[1:],
                                    self.likelihood)

  def save_assets(self, workdir: pathlib.Path, config):
    """Returns a copy of `config` that records the image shape (`data.image_shape`), so that
    embedding other images later checks them against it."""
    del workdir
    config = copy.deepcopy(config)
    with config.unlocked():
      config.data.image_shape = tuple(int(d) for d in self.dataset.train_images.shape[1:])
    return config

  def preprocess(self, batch, key):
    return preprocess_images(batch["image"], key, self._binarize,
                             self._augment if self._augment_inputs else None)

  def views(self, batch, key, num_views):
    """`num_views` copies of the batch, each augmented and binarised with its own keys."""
    return tuple(preprocess_images(batch["image"], view_key, self._binarize, self._augment)
                 for view_key in jax.random.split(key, num_views))

  embedding_splits = ("train", "test")
  raw_inputs_are_features = True

  def _split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    d = self.dataset
    return {"train": (d.train_images, d.train_labels), "val": (d.val_images, d.val_labels),
            "test": (d.test_images, d.test_labels)}[split]

  def embedding_inputs(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pixels in [0, 1] (not binarised) [N, H, W, C] and {"labels": [N] or [N, L]} (none for
    unlabelled images). With a validation split the only split is "all": train, val and test
    rows in that order, and "split_given" int8 [N] (0 train, 1 valid, 2 test) says which."""
    if split not in self.embedding_splits:
      raise ConfigError(f"Unknown split {split!r}; choose from {self.embedding_splits}.")
    parts = ("train", "val", "test") if split == "all" else (split,)
    images = [self._split_arrays(part)[0] for part in parts]
    labels = [self._split_arrays(part)[1] for part in parts]
    annotations = {} if labels[0] is None else {"labels": np.concatenate(labels)}
    if split == "all":
      codes = (embedding_files.SPLIT_TRAIN, embedding_files.SPLIT_VALID, embedding_files.SPLIT_TEST)
      annotations[embedding_files.SPLIT_PREFIX + GIVEN_SPLIT] = np.concatenate(
          [np.full(len(part), code, np.int8) for part, code in zip(images, codes)])
    return np.concatenate(images).astype(np.float32) / 255.0, annotations

  def likelihood_inputs(self, split: str) -> np.ndarray:
    """`embedding_inputs`'s pixels, binarised once with a fixed seed (Bernoulli(intensity)) when
    the model trains on binarised pixels: the Bernoulli likelihood is then a proper one."""
    pixels = self.embedding_inputs(split)[0]
    if not self._binarize:
      return pixels
    return (np.random.default_rng(0).random(pixels.shape) < pixels).astype(np.float32)

  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """Test reconstruction loss -log p(x|z=mu) (nats/image, pixels in [0, 1] as targets; absent
    for encoder-only models; with an 8-bit likelihood also in bits per dimension) and the KNN
    accuracy of the mean encoding (fit on train, scored on test, and on val when there is one;
    `knn_accuracy`; absent without labels); on the first `eval.max_examples` images of each split
    when it is > 0."""
    batch_size, k = self._eval_config.batch_size, self._eval_config.knn_k
    limit = self._eval_config.get("max_examples", 0) or None
    splits = ("train", "test") if self.dataset.val_images is None else ("train", "val", "test")
    embedded = {}
    for split in splits:
      images, labels = self._split_arrays(split)
      inputs = images[:limit].astype(np.float32) / 255.0
      embedded[split] = (embedding_compute.embed_inputs(model, params, inputs, mesh, batch_size),
                         None if labels is None else labels[:limit])
    train, train_labels = embedded["train"]
    test = embedded["test"][0]
    metrics = {}
    if "reconstruction_nll" in test:
      metrics["test_reconstruction_loss"] = float(np.mean(test["reconstruction_nll"]))
      if likelihoods.PIXEL_LIKELIHOODS[self.likelihood].discrete:
        metrics["test_bits_per_dim"] = likelihoods.bits_per_dim(
            metrics["test_reconstruction_loss"], int(np.prod(self.dataset.test_images.shape[1:])))
    if train_labels is not None:
      for split in splits[1:]:
        prefix = "" if split == "test" else f"{split}_"
        metrics[f"{prefix}knn{k}_accuracy_mean"] = knn_accuracy(
            train["mean"], train_labels, embedded[split][0]["mean"], embedded[split][1], k)
    return metrics


def build_image_task(config: ml_collections.ConfigDict) -> ImageTask:
  """The image task of `data.name`: an MNIST-like set, or an `image_sources` loader's images."""
  loader = image_sources.LOADERS.get(config.data.name, mnist.load_image_dataset)
  return ImageTask(loader(config.data), config)
