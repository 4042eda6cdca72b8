"""Short runs on your own images: train, embed and probe from an image folder, an npz archive
(MNIST-like, a 32x32x3 colour set, scikit-learn's 8x8 digits in the MedMNIST layout), under
Bernoulli and 8-bit likelihoods; embedding images of another size fails clearly."""

import json

import numpy as np
import pytest
from PIL import Image

from cmim_jax import embedding, errors, training
from cmim_jax.probes import evaluate, workflows
from experiments.configs import image_folder as image_folder_config
from experiments.configs import npz as npz_config
from tests.conftest import make_synthetic_digits

PROBES = evaluate.ProbeSettings(probes=("knn5_cosine",), num_seeds=1, max_train=256,
                                embeddings=("mean", "informative"), controls=False)


def tiny(config, encoder, data_dir):
  config.data.data_dir = str(data_dir)
  config.data.batch_size = 16
  config.model.update(encoder=encoder, latent_dim=4, hidden_sizes=(32,), conv_features=(8, 8),
                      conv_dense_size=16)
  config.model.perceiver.update(patch_size=4, width=8, num_latents=2, num_heads=2,
                                encoder_layers=1, decoder_memory_tokens=2)
  config.train.update(num_steps=2, log_every_steps=2)
  config.checkpoint.every_steps = 2
  config.eval.update(batch_size=64, max_examples=256, likelihood_samples=2, likelihood_examples=32)
  return config


def train_embed_probe(config, workdir):
  """Trains, writes the embeddings, probes them; returns (summary, probe report)."""
  summary = training.train_and_evaluate(config, workdir)
  trained = embedding.load_trained(workdir)
  embedding.write_embeddings(trained, workdir / "embeddings")
  report = workflows.probe_run(workdir / "embeddings", workdir / "probe", PROBES)
  assert json.loads((workdir / "summary.json").read_text()) == json.loads(json.dumps(summary))
  return summary, report


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory):
  """Synthetic MNIST-like digits as a PNG tree (train/, test/) and as an npz archive."""
  root = tmp_path_factory.mktemp("mnist_like")
  splits = {"train": make_synthetic_digits(160, 0), "test": make_synthetic_digits(64, 1)}
  for split, (images, labels) in splits.items():
    for i, (image, label) in enumerate(zip(images, labels)):
      (root / "png" / split / str(label)).mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(root / "png" / split / str(label) / f"{i:04d}.png")
  np.savez(root / "mnist.npz", **{f"{split}_{kind}": array for split, arrays in splits.items()
                                  for kind, array in zip(("images", "labels"), arrays)})
  return root


@pytest.mark.parametrize("source", ["image_folder", "npz"])
def test_mnist_like_folder_and_npz_train_embed_probe(mnist_like, tmp_path, source):
  module = image_folder_config if source == "image_folder" else npz_config
  path = mnist_like / ("png" if source == "image_folder" else "mnist.npz")
  config = tiny(module.get_config(), "mlp", path)
  config.data.binarize = True  # As MNIST: Bernoulli pixels (the default follows the data).
  summary, report = train_embed_probe(config, tmp_path)
  assert summary["data_source"] == f"{source}:{path}"
  assert "test_bits_per_dim" not in summary and summary["knn5_accuracy_mean"] > 0.2
  assert report["results"]["knn5_cosine"]["mean"]["accuracy"]["mean"] > 0.2  # Chance: 0.1.


@pytest.fixture(scope="module")
def colour_npz(tmp_path_factory):
  """A synthetic 32x32x3 colour set: 3 classes, one bright channel each, plus noise."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 96)
  images = rng.integers(0, 80, (96, 32, 32, 3)).astype(np.uint8)
  images[np.arange(96), 8:24, 8:24, labels] = 230
  path = tmp_path_factory.mktemp("colour") / "colour.npz"
  np.savez(path, images=images, labels=labels)
  return path


@pytest.fixture(scope="module")
def digits_medmnist(tmp_path_factory):
  """scikit-learn's bundled 8x8 digits (0..16 intensities scaled to uint8) in the MedMNIST
  layout: train, val, test arrays with [N, 1] labels."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = np.round(digits.images * (255 / 16)).astype(np.uint8)
  labels = digits.target[:, None].astype(np.uint8)
  cuts = {"train": slice(0, 1000), "val": slice(1000, 1300), "test": slice(1300, None)}
  path = tmp_path_factory.mktemp("digits") / "digits.npz"
  np.savez(path, **{f"{split}_{kind}": array[rows] for split, rows in cuts.items()
                    for kind, array in (("images", images), ("labels", labels))})
  return path


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["conv", "perceiver"])
def test_colour_and_digits_train_under_the_8bit_likelihood(colour_npz, digits_medmnist, tmp_path,
                                                           encoder):
  colour = tiny(npz_config.get_config(), encoder, colour_npz)
  colour.model.perceiver.patch_size = 8  # 16 tokens of 32x32 images: a quicker test.
  summary, report = train_embed_probe(colour, tmp_path / "colour")
  assert summary["test_bits_per_dim"] == pytest.approx(
      summary["test_reconstruction_loss"] / (32 * 32 * 3 * np.log(2)))
  assert 0 < summary["test_bits_per_dim"] < 16  # Trained a little from ~8 bits (uniform).
  assert np.isfinite(summary["bits_per_dim_bound"])  # The importance-sampled bound, 8-bit pixels.
  assert (tmp_path / "colour" / "samples.png").stat().st_size > 0  # Mean images of the logistic.
  assert set(report["results"]["knn5_cosine"]) == {"mean", "informative"}

  digits = tiny(npz_config.get_config(), encoder, digits_medmnist)
  if encoder == "perceiver":
    digits.model.likelihood = "categorical"  # The 256-way softmax, for small images.
  summary, report = train_embed_probe(digits, tmp_path / "digits")
  assert np.isfinite(summary["test_bits_per_dim"]) and "val_knn5_accuracy_mean" in summary
  # val is the validation split: the probes fit train -> val beside train+val -> test.
  assert {e["scored_on"] for e in report["info"]["evaluations"]} == {"valid", "test"}
  embedded = np.load(tmp_path / "digits" / "embeddings" / "all.npz")
  assert np.bincount(embedded["split_given"]).tolist() == [1000, 300, 497]

  # Embedding images of another size than the model's: one clear error.
  with pytest.raises(errors.ConfigError, match=r"are 32x32 with 3 channel\(s\), but the model "
                                               r"was trained on 8x8 with 1"):
    embedding.load_trained(tmp_path / "digits", data_dir=str(colour_npz))
  trained = embedding.load_trained(tmp_path / "digits")
  with pytest.raises(errors.DataError, match=r"shape \(2, 32, 32, 3\) do not fit.*\[N, 8, 8, 1\]"):
    embedding.embed_arrays(trained, np.zeros((2, 32, 32, 3), np.float32))
