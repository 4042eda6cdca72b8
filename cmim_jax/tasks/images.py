"""Labelled image tasks (MNIST-like): Bernoulli pixels, KNN accuracy of the mean encoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from cmim_jax import embeddings, models
from cmim_jax.data import augment as augment_lib
from cmim_jax.data import mnist
from cmim_jax.errors import ConfigError
from cmim_jax.tasks.base import Task

IMAGE_DATASETS = tuple(mnist.SPECS)


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
  """An MNIST-like data set; inputs are images [B, H, W, C] with pixels in [0, 1].

  `config.augment` sets the augmentations of the views (`views`); the training inputs of every
  method are augmented too only when `config.augment.apply_to_inputs` is True.
  """

  def __init__(self, dataset: mnist.ImageDataset, config: ml_collections.ConfigDict):
    self.dataset = dataset
    self.source = dataset.source
    self._binarize = config.data.binarize
    self._augment = augment_lib.AugmentConfig.from_config(config.augment)
    self._augment_inputs = bool(config.augment.apply_to_inputs)
    self._eval_config = config.eval
    self.train_arrays = {"image": dataset.train_images}
    self.example_input = np.zeros((2, *dataset.train_images.shape[1:]), np.float32)

  def build_model(self, model_config):
    return models.build_autoencoder(model_config, self.dataset.train_images.shape[1:])

  def preprocess(self, batch, key):
    return preprocess_images(batch["image"], key, self._binarize,
                             self._augment if self._augment_inputs else None)

  def views(self, batch, key, num_views):
    """`num_views` copies of the batch, each augmented and binarised with its own keys."""
    return tuple(preprocess_images(batch["image"], view_key, self._binarize, self._augment)
                 for view_key in jax.random.split(key, num_views))

  embedding_splits = ("train", "test")
  raw_inputs_are_features = True

  def embedding_inputs(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pixels in [0, 1] (not binarised) [N, H, W, C] and {"labels": [N]}."""
    if split not in self.embedding_splits:
      raise ConfigError(f"Unknown split {split!r}; choose from {self.embedding_splits}.")
    images, labels = ((self.dataset.train_images, self.dataset.train_labels) if split == "train"
                      else (self.dataset.test_images, self.dataset.test_labels))
    return images.astype(np.float32) / 255.0, {"labels": labels}

  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """Test reconstruction loss -log p(x|z=mu) (nats/image, pixels in [0, 1] as targets; absent
    for encoder-only models) and the KNN accuracy of the mean encoding (fit on train, scored on
    test; `knn_accuracy`); on the first `eval.max_examples` images of each split when it is > 0."""
    batch_size, k = self._eval_config.batch_size, self._eval_config.knn_k
    limit = self._eval_config.get("max_examples", 0) or None
    embedded = {}
    for split in self.embedding_splits:
      inputs, annotations = self.embedding_inputs(split)
      embedded[split] = (embeddings.embed_inputs(model, params, inputs[:limit], mesh, batch_size),
                         annotations["labels"][:limit])
    (train, train_labels), (test, test_labels) = embedded["train"], embedded["test"]
    metrics = {}
    if "reconstruction_nll" in test:
      metrics["test_reconstruction_loss"] = float(np.mean(test["reconstruction_nll"]))
    metrics[f"knn{k}_accuracy_mean"] = knn_accuracy(train["mean"], train_labels, test["mean"],
                                                    test_labels, k)
    return metrics


def build_image_task(config: ml_collections.ConfigDict) -> ImageTask:
  return ImageTask(mnist.load_image_dataset(config.data), config)
