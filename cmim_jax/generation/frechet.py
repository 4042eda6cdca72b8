"""A sample-quality proxy for MNIST-like images: the Frechet distance in the feature space of a
small classifier.

FID (Heusel et al., arXiv:1706.08500) compares Gaussians fitted to Inception features; Inception
knows nothing of 28x28 digits, so this proxy uses the 64-d penultimate layer of a small MLP
classifier trained once per data set (a few seconds on a CPU) and cached in the data cache folder.
Its values are comparable only between runs that use the same cached classifier; report them
beside the reference values (`sample_quality`): real vs real (two halves of the test set)
and real vs uniform noise.
"""

from __future__ import annotations

import hashlib
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
from absl import logging
from flax import traverse_util

from cmim_jax.data import download


class FeatureClassifier(nn.Module):
  """Images [B, H, W, C] in [0, 1] -> (logits [B, classes], features [B, 64])."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(256)(x.reshape((x.shape[0], -1))))
    features = nn.relu(nn.Dense(64)(h))
    return nn.Dense(self.num_classes)(features), features


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """||m_a - m_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) of Gaussians fitted to a [N, F], b [M, F]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mean_a, mean_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(cov_a @ cov_b)
  value = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * np.real(root))
  return float(max(value, 0.0))


def train_classifier(images: np.ndarray, labels: np.ndarray, seed: int = 0, num_epochs: int = 2,
                     batch_size: int = 256) -> dict:
  """Parameters of a `FeatureClassifier` trained with Adam on images [N, H, W, C], labels [N]."""
  model = FeatureClassifier(int(labels.max()) + 1)
  params = model.init(jax.random.key(seed), images[:1])["params"]
  tx = optax.adam(1e-3)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits, _ = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  rng = np.random.default_rng(seed)
  for _ in range(num_epochs):
    order = rng.permutation(len(images))
    for start in range(0, len(order) - batch_size + 1, batch_size):
      rows = order[start:start + batch_size]
      params, opt_state = step(params, opt_state, images[rows], labels[rows])
  return params


def _fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
  digest = hashlib.sha256(repr(images.shape).encode())
  digest.update(np.ascontiguousarray(images[::97]).tobytes())
  digest.update(np.ascontiguousarray(labels).tobytes())
  return digest.hexdigest()[:16]


def cached_classifier(name: str, images: np.ndarray, labels: np.ndarray,
                      cache: pathlib.Path | None = None) -> dict:
  """The classifier of this training set: read from `cache` (default: the data cache folder's
  frechet_classifier/) or trained once and written there."""
  folder = pathlib.Path(cache or download.cache_dir() / "frechet_classifier")
  path = folder / f"{name}-{_fingerprint(images, labels)}.npz"
  if path.is_file():
    with np.load(path, allow_pickle=False) as stored:
      return traverse_util.unflatten_dict({tuple(k.split("/")): stored[k] for k in stored.files})
  logging.info("Training the Frechet-distance feature classifier for %s (once).", name)
  params = jax.device_get(train_classifier(images, labels))
  folder.mkdir(parents=True, exist_ok=True)
  flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
  np.savez(path, **flat)
  return params


def features(params: dict, images: np.ndarray, batch_size: int = 2000) -> np.ndarray:
  """The classifier's 64-d features of images [N, H, W, C]: [N, 64]."""
  num_classes = params["Dense_2"]["bias"].shape[0]
  apply = jax.jit(lambda x: FeatureClassifier(num_classes).apply({"params": params}, x)[1])
  return np.concatenate([np.asarray(apply(jnp.asarray(images[i:i + batch_size], jnp.float32)))
                         for i in range(0, len(images), batch_size)])


def sample_quality(params: dict, test_images: np.ndarray, samples: np.ndarray,
                   seed: int = 0) -> dict[str, float]:
  """Frechet distances to the second half of the test images [N, H, W, C] of: `samples` (its
  first N/2), the first half of the test images (real vs real) and N/2 uniform-noise images (real
  vs noise). Equal set sizes keep the three comparable (the estimate is biased upward at small N).
  """
  half = len(test_images) // 2
  if len(samples) < half:
    raise ValueError(f"Need at least {half} samples (half the {len(test_images)} test images), "
                     f"got {len(samples)}.")
  real = features(params, test_images[:2 * half])
  noise = np.random.default_rng(seed).random((half, *test_images.shape[1:]), np.float32)
  reference = real[half:]
  return {"frechet_samples": frechet_distance(features(params, samples[:half]), reference),
          "frechet_real_vs_real": frechet_distance(real[:half], reference),
          "frechet_real_vs_noise": frechet_distance(features(params, noise), reference)}
