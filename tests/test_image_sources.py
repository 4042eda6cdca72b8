"""Your own images: the npz, image_folder and tfds sources, the 8-bit pixel likelihoods, and the
clear errors of bad inputs (no training here; `test_own_images_training.py` trains)."""

import sys
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cmim_jax import config_validation, models
from cmim_jax.data import image_sources, mnist
from cmim_jax.errors import ConfigError, DataError
from cmim_jax.models import likelihoods
from cmim_jax.tasks import images as image_tasks
from experiments.configs import image_folder as image_folder_config
from experiments.configs import npz as npz_config
from experiments.configs import tfds as tfds_config
from tests.conftest import make_synthetic_digits, shared_data_path


def write_png_tree(root, splits):
  """Writes {split: (uint8 [N, H, W(, C)], labels [N])} as root/split/<label>/<i>.png."""
  for split, (images, labels) in splits.items():
    for i, (image, label) in enumerate(zip(images, labels)):
      folder = root / split / str(int(label))
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(np.squeeze(image)).save(folder / f"{i:05d}.png")
  return root


def by_class(images, labels):
  """The rows in the order the folder loader lists them: by class, then by file index."""
  order = np.argsort(labels, kind="stable")
  return images[order], labels[order]


def data_config(name, path, **fields):
  config = (npz_config if name == "npz" else image_folder_config).get_config().data
  config.data_dir = str(path)
  config.update(fields)
  return config


@pytest.fixture(scope="module")
def idx_mnist(tmp_path_factory):
  """The small synthetic MNIST as the IDX path loads it."""
  from tests.conftest import write_synthetic_mnist  # pylint: disable=g-import-not-at-top
  folder = write_synthetic_mnist(tmp_path_factory.mktemp("idx"), num_train=96, num_test=32)
  return mnist.read_idx_folder(folder, mnist.SPECS["mnist"], "test")


def test_png_tree_and_npz_load_the_idx_pixels_and_labels(idx_mnist, tmp_path):
  splits = {"train": (idx_mnist.train_images, idx_mnist.train_labels),
            "test": (idx_mnist.test_images, idx_mnist.test_labels)}
  folder = image_sources.load_image_folder(data_config("image_folder", write_png_tree(
      tmp_path / "png", splits)))
  for split in ("train", "test"):
    images, labels = by_class(*splits[split])
    np.testing.assert_array_equal(getattr(folder, f"{split}_images"), images)
    np.testing.assert_array_equal(getattr(folder, f"{split}_labels"), labels)
  assert folder.train_images.shape[1:] == (28, 28, 1)
  assert folder.input_rows["skipped"] == {} and folder.input_rows["kept"] == 128

  path = tmp_path / "mnist.npz"
  np.savez(path, train_images=idx_mnist.train_images[..., 0], train_labels=idx_mnist.train_labels,
           test_images=idx_mnist.test_images[..., 0], test_labels=idx_mnist.test_labels[:, None])
  archive = image_sources.load_npz(data_config("npz", path))
  for field in ("train_images", "train_labels", "test_images", "test_labels"):
    np.testing.assert_array_equal(getattr(archive, field), getattr(idx_mnist, field))
  assert archive.val_images is None


def test_real_mnist_as_npz_matches_the_idx_path(tmp_path):
  folder = shared_data_path("mnist")
  real = mnist.read_idx_folder(folder, mnist.SPECS["mnist"], "shared")
  path = tmp_path / "mnist.npz"
  np.savez(path, train_images=real.train_images, train_labels=real.train_labels,
           test_images=real.test_images, test_labels=real.test_labels)
  archive = image_sources.load_npz(data_config("npz", path))
  np.testing.assert_array_equal(archive.train_images, real.train_images)
  np.testing.assert_array_equal(archive.test_labels, real.test_labels)


def test_medmnist_layout_val_is_the_validation_split(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {f"{split}_{kind}": (rng.integers(0, 256, (n, 12, 12, 3), np.uint8) if kind == "images"
                                else rng.integers(0, 4, (n, 1)).astype(np.uint8))
            for split, n in (("train", 40), ("val", 10), ("test", 20))
            for kind in ("images", "labels")}
  np.savez(tmp_path / "med.npz", **arrays)
  config = npz_config.get_config()
  config.data.data_dir = str(tmp_path / "med.npz")
  task = image_tasks.build_image_task(config)
  np.testing.assert_array_equal(task.dataset.val_images, arrays["val_images"])
  np.testing.assert_array_equal(task.dataset.val_labels, arrays["val_labels"][:, 0])
  assert task.embedding_splits == ("all",)
  inputs, annotations = task.embedding_inputs("all")
  assert inputs.shape == (70, 12, 12, 3) and 0.0 <= inputs.min() <= inputs.max() <= 1.0
  np.testing.assert_array_equal(np.bincount(annotations["split_given"]), [40, 10, 20])
  np.testing.assert_array_equal(inputs[40:50], arrays["val_images"] / np.float32(255.0))
  assert task.likelihood == "discretized_logistic"  # The default follows the (8-bit) data.


def test_one_pair_is_cut_by_fractions_and_float_pixels_are_scaled(tmp_path):
  images = np.random.default_rng(1).random((50, 8, 8)).astype(np.float32)
  labels = np.arange(50) % 5
  multi = np.stack([labels % 2, labels // 2], axis=1)
  np.savez(tmp_path / "one.npz", images=images, labels=multi)
  dataset = image_sources.load_npz(data_config("npz", tmp_path / "one.npz", test_fraction=0.2,
                                               val_fraction=0.1))
  assert (len(dataset.train_images), len(dataset.val_images), len(dataset.test_images)) == (
      35, 5, 10)
  assert dataset.train_labels.shape == (35, 2)  # Multi-label rows kept.
  pooled = np.concatenate([dataset.train_images, dataset.val_images, dataset.test_images])
  np.testing.assert_array_equal(np.sort(pooled.ravel()),
                                np.sort(np.round(images * 255).astype(np.uint8).ravel()))
  again = image_sources.load_npz(data_config("npz", tmp_path / "one.npz", test_fraction=0.2,
                                             val_fraction=0.1))
  np.testing.assert_array_equal(again.test_images, dataset.test_images)  # A fixed cut.


def test_flat_folder_without_labels_converts_size_and_channels(tmp_path):
  rng = np.random.default_rng(2)
  for i in range(10):
    size = (20, 30) if i % 2 else (16, 16)
    Image.fromarray(rng.integers(0, 256, (*size, 3), np.uint8)).save(tmp_path / f"{i}.jpg")
  (tmp_path / "notes.txt").write_text("not an image")
  dataset = image_sources.load_image_folder(data_config("image_folder", tmp_path,
                                                        image_size=12, channels=1))
  assert dataset.train_images.shape == (8, 12, 12, 1) and dataset.train_labels is None
  assert dataset.input_rows["skipped"] == {"not_an_image_file": 1}


# ----------------------------------------------------------------------------- bad inputs


def test_mixed_sizes_in_a_folder_is_one_clear_error(tmp_path):
  for name, size in (("a.png", 8), ("b.png", 10)):
    (tmp_path / "cats").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((size, size), np.uint8)).save(tmp_path / "cats" / name)
  with pytest.raises(DataError, match=r"different sizes.*a.png is 8x8.*b.png is 10x10.*"
                                      r"--config.data.image_size"):
    image_sources.load_image_folder(data_config("image_folder", tmp_path))


def test_unreadable_image_is_skipped_and_counted(tmp_path):
  images, labels = make_synthetic_digits(12, 0, image_size=8)
  root = write_png_tree(tmp_path, {"all": (images, labels)}) / "all"
  (root / str(int(labels[0])) / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
  dataset = image_sources.load_image_folder(data_config("image_folder", root, test_fraction=0.25))
  assert dataset.input_rows["skipped"] == {"unreadable_image": 1}
  assert dataset.input_rows["kept"] == 12 and dataset.input_rows["files"] == 13
  assert len(dataset.train_images) + len(dataset.test_images) == 12


def test_archive_without_the_expected_keys(tmp_path):
  np.savez(tmp_path / "x.npz", pictures=np.zeros((4, 8, 8), np.uint8))
  with pytest.raises(DataError, match=r"holds \['pictures'\] but needs 'train_images'"):
    image_sources.load_npz(data_config("npz", tmp_path / "x.npz"))
  (tmp_path / "y.npz").write_bytes(b"garbage")
  with pytest.raises(DataError, match="not a readable .npz archive"):
    image_sources.load_npz(data_config("npz", tmp_path / "y.npz"))


def test_labels_that_do_not_match_the_image_count(tmp_path):
  np.savez(tmp_path / "x.npz", train_images=np.zeros((10, 8, 8), np.uint8),
           train_labels=np.zeros(9, np.int64), test_images=np.zeros((4, 8, 8), np.uint8),
           test_labels=np.zeros(4, np.int64))
  with pytest.raises(DataError, match=r"train_labels\]: labels of shape \(9,\) for 10 images"):
    image_sources.load_npz(data_config("npz", tmp_path / "x.npz"))


def test_perceiver_patch_that_does_not_divide_the_image():
  config = npz_config.get_config().model
  config.encoder = "perceiver"
  with pytest.raises(ConfigError, match=r"patch_size=4 must divide the image size 30x30.*"
                                        r"one of \[1, 2, 3, 5, 6, 10, 15, 30\]"):
    models.build_autoencoder(config, (30, 30, 3), "discretized_logistic")


def test_config_validation_of_image_source_fields():
  config = npz_config.get_config()
  config.data.binarize = True
  config.model.likelihood = "categorical"
  config.data.channels = 2
  with pytest.raises(ConfigError) as error:
    config_validation.validate(config)
  message = str(error.value)
  assert "data.data_dir='': must be the .npz archive" in message
  assert "data.channels=2" in message and "model.likelihood='categorical'" in message


# ----------------------------------------------------------------------------- tfds


def _fake_tfds(features):
  """A stand-in for tensorflow_datasets: `load(..., batch_size=-1)` gives `features` per split."""
  module = types.ModuleType("tensorflow_datasets")
  module.calls = []

  def load(name, split, batch_size, data_dir):
    module.calls.append((name, split, batch_size, data_dir))
    if name != "my_images":
      raise ValueError(f"Dataset {name} not found.")
    return features[split]

  module.load, module.as_numpy = load, lambda tree: tree
  return module


def test_tfds_source_through_its_adapter(monkeypatch):
  rng = np.random.default_rng(3)
  features = {split: {"img": rng.integers(0, 256, (n, 8, 8, 3), np.uint8),
                      "class": rng.integers(0, 3, n)} for split, n in (("train", 12),
                                                                          ("test[:50%]", 4))}
  fake = _fake_tfds(features)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  config = tfds_config.get_config().data
  config.update(tfds_name="my_images", test_split="test[:50%]", image_key="img",
                label_key="class")
  dataset = image_sources.load_tfds(config)
  np.testing.assert_array_equal(dataset.test_images, features["test[:50%]"]["img"])
  np.testing.assert_array_equal(dataset.train_labels, features["train"]["class"])
  assert fake.calls[0] == ("my_images", "train", -1, None) and dataset.source == "tfds:my_images"
  config.label_key = "label"
  with pytest.raises(DataError, match=r"no feature\(s\) \['label'\].*--config.data.label_key"):
    image_sources.load_tfds(config)
  config.tfds_name = "missing"
  with pytest.raises(DataError, match="tfds could not load 'missing'"):
    image_sources.load_tfds(config)


def test_tfds_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  config = tfds_config.get_config().data
  config.tfds_name = "mnist"
  with tfds.testing.mock_data(num_examples=8):
    dataset = image_sources.load_tfds(config)
  assert dataset.train_images.shape == (8, 28, 28, 1) and dataset.train_images.dtype == np.uint8
  assert dataset.test_labels.shape == (8,)


# ----------------------------------------------------------------------------- likelihoods


@pytest.mark.parametrize("name", ["discretized_logistic", "categorical"])
def test_8bit_likelihoods_are_distributions_over_the_256_intensities(name):
  likelihood = likelihoods.PIXEL_LIKELIHOODS[name]
  k = likelihood.params_per_channel
  every_value = jnp.arange(256, dtype=jnp.float32).reshape(256, 1, 1, 1) / 255.0
  for scale in (1.0, 5.0, 30.0):  # Wide to very peaked logistics (log-scale near its bounds).
    outputs = scale * jax.random.normal(jax.random.key(int(scale)), (1, 1, 1, k))
    log_p = likelihood.log_prob(jnp.broadcast_to(outputs, (256, 1, 1, k)), every_value)
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(float(jax.nn.logsumexp(log_p)), 0.0, atol=1e-4)


def test_discretized_logistic_is_stable_and_prefers_the_mean():
  x = jnp.array([0.0, 128 / 255, 1.0]).reshape(1, 1, 3, 1)  # On the 8-bit grid.
  near = jnp.stack([2 * x - 1, jnp.full_like(x, -20.0)], axis=-1).reshape(1, 1, 3, 2)
  far = near.at[..., 0].set(-near[..., 0])
  log_near = likelihoods.discretized_logistic_log_likelihood(near, x)
  log_far = likelihoods.discretized_logistic_log_likelihood(far, x)
  assert float(log_near[0]) > -0.2 > -50 > float(log_far[0])  # Peaked at x: probability ~1.
  gradient = jax.grad(lambda o: jnp.sum(likelihoods.discretized_logistic_log_likelihood(o, x)))
  assert np.all(np.isfinite(gradient(far)))
  assert likelihoods.bits_per_dim(float(np.log(2.0)) * 3, 3) == pytest.approx(1.0)


def test_decoders_emit_the_likelihood_parameters_for_any_size():
  config = npz_config.get_config().model
  config.update(hidden_sizes=(8,), conv_features=(4, 4), conv_dense_size=8, latent_dim=2)
  config.perceiver.update(width=8, num_latents=2, decoder_memory_tokens=2, num_heads=2)
  x = jax.random.uniform(jax.random.key(0), (2, 10, 6, 3))
  for encoder in ("mlp", "conv"):
    config.encoder = encoder
    for name, k in (("bernoulli", 1), ("discretized_logistic", 2), ("categorical", 256)):
      model = models.build_autoencoder(config, (10, 6, 3), name)
      outputs, _ = jax.eval_shape(model.init_with_output, jax.random.key(1), x, jax.random.key(2))
      assert outputs["logits"].shape == (2, 10, 6, 3 * k) and outputs["log_px"].shape == (2,)
  config.encoder = "perceiver"
  config.perceiver.patch_size = 2
  model = models.build_autoencoder(config, (10, 6, 3), "discretized_logistic")
  outputs, _ = jax.eval_shape(model.init_with_output, jax.random.key(1), x, jax.random.key(2))
  assert outputs["logits"].shape == (2, 10, 6, 6)


def test_likelihood_default_follows_the_data():
  config = ml_collections.ConfigDict({"model": {"likelihood": "auto"}, "data": {"binarize": True}})
  assert image_tasks.resolve_likelihood(config) == "bernoulli"
  config.data.binarize = False
  assert image_tasks.resolve_likelihood(config) == "discretized_logistic"
  config.model.likelihood = "categorical"
  assert image_tasks.resolve_likelihood(config) == "categorical"
