"""Fashion-MNIST: its config, its spec, and the MNIST loaders serving it (synthetic IDX files)."""

import dataclasses
import gzip
import hashlib
import re

import pytest

from cmim_jax import tasks
from cmim_jax.data import mnist
from tests.conftest import write_synthetic_mnist
from tests.test_molecules_data import serve_folder
from experiments.configs import fashion_mnist as fashion_config
from experiments.configs import mnist as mnist_config

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# SHA-256 of the decompressed canonical Fashion-MNIST files (issue 27).
FASHION_CONTENT_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def test_config_differs_from_mnist_only_in_the_data_set():
  fashion, digits = fashion_config.get_config("quick"), mnist_config.get_config("quick")
  assert fashion.data.name == "fashion_mnist"
  fashion.data.name, fashion.data.allow_fallback = digits.data.name, digits.data.allow_fallback
  assert fashion.to_dict() == digits.to_dict()  # Same model, method, steps and optimiser.


def test_spec_has_a_sha256_for_every_file():
  spec = mnist.SPECS["fashion_mnist"]
  assert spec.tfds_name == "fashion_mnist"
  for name in FILES:
    accepted, digest = spec.verification(name)
    assert len(accepted) == 1 and re.fullmatch(r"[0-9a-f]{64}", accepted[0]), name
    assert accepted == [FASHION_CONTENT_SHA256[name]]  # The decompressed canonical files'.
    assert digest is mnist._content_sha256  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="no SHA-256 for"):
    dataclasses.replace(spec, content_sha256={}, archive_sha256={})


def test_loads_from_data_dir_as_a_task(tmp_path):
  config = fashion_config.get_config()
  config.data.data_dir = str(write_synthetic_mnist(tmp_path / "fashion", 64, 16))
  task = tasks.build_task(config)
  assert task.source == f"data_dir:{config.data.data_dir}"
  assert task.train_arrays["image"].shape == (64, 28, 28, 1)
  assert task.dataset.test_labels.shape == (16,)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
  """Synthetic IDX files served on a loopback port, an empty cache, and the fashion config
  pointing there."""
  folder = write_synthetic_mnist(tmp_path / "mirror", 64, 16)
  monkeypatch.setenv("CMIM_JAX_CACHE", str(tmp_path / "cache"))
  monkeypatch.setattr(mnist, "_tfds_installed", lambda: False)
  config = fashion_config.get_config()
  with serve_folder(folder) as url:
    config.data.mirrors = (url,)
    yield folder, config


@pytest.mark.parametrize("checksum", ["archive", "content"])
def test_downloads_verified_by_the_spec_into_the_cache(tmp_path, monkeypatch, mirror, checksum):
  folder, config = mirror
  digests = {}
  for name in FILES:
    data = (folder / name).read_bytes()
    digests[name] = hashlib.sha256(data if checksum == "archive" else gzip.decompress(data))
  digests = {name: d.hexdigest() for name, d in digests.items()}
  hashes = dict(content_sha256={}, archive_sha256={})
  hashes[f"{checksum}_sha256"] = digests
  spec = dataclasses.replace(mnist.SPECS["fashion_mnist"], **hashes)
  monkeypatch.setitem(mnist.SPECS, "fashion_mnist", spec)
  dataset = mnist.load_image_dataset(config.data)
  assert dataset.source == f"cache:{tmp_path / 'cache' / 'fashion_mnist'}"
  assert dataset.train_images.shape == (64, 28, 28, 1)
  cached = sorted(p.name for p in (tmp_path / "cache" / "fashion_mnist").iterdir())
  assert cached == sorted(FILES + tuple(f".{name}.verified" for name in FILES))  # + stamps


def test_files_that_do_not_match_the_published_checksums_are_refused(tmp_path, mirror):
  _, config = mirror
  with pytest.raises(mnist.DataUnavailableError, match="does not match") as error:
    mnist.load_image_dataset(config.data)
  assert "data_dir" in str(error.value)  # The message says how to fix it.
  assert not any((tmp_path / "cache").rglob("*.gz"))  # Nothing unverified lands in the cache.
