"""Shared fixtures. Tests run on 8 simulated CPU devices so sharding is exercised everywhere."""

import os
import tempfile

# Must happen before jax is imported anywhere. The last two flags skip LLVM's slow optimisations of
# the CPU machine code (the XLA program is the same): tests compile many small programs and run
# each for a few steps only, so this cuts their time by about half.
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           f" {_DEVICE_COUNT_FLAG}=8"
                           " --xla_backend_optimization_level=0"
                           " --xla_llvm_disable_expensive_passes=true").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One compilation cache per test run, shared by the xdist workers and the entry points they start
# (never the user's home): many tests compile the same tiny programs, which then load instead.
# CMIM_TEST_COMPILATION_CACHE=off compiles everything afresh.
if os.environ.get("CMIM_TEST_COMPILATION_CACHE") == "off":
  os.environ.setdefault("CMIM_JAX_COMPILATION_CACHE", "off")
else:
  os.environ.setdefault("CMIM_JAX_COMPILATION_CACHE", os.path.join(
      tempfile.gettempdir(), f"cmim_jax_test_cache_{os.getuid()}",
      os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))))

import pathlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import re  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np
import pytest

from cmim_jax import compilation_cache
from cmim_jax.data.idx import write_idx
from experiments.configs import mnist as mnist_config

compilation_cache.enable()  # In this process too, at the folder chosen above.

# The files that take longest (minutes each on 2 cores) start first: `--dist loadfile` hands out
# files in collection order, so two workers then finish together instead of one idling while the
# other runs a long file at the end.
LONGEST_FIRST = ("test_paper_experiments.py", "test_notebooks.py", "test_own_images_training.py",
                 "test_device_suite.py", "test_streaming.py", "test_molecule_labels.py",
                 "test_training.py", "test_bad_inputs_workdir.py", "test_bad_inputs.py",
                 "test_methods.py", "test_losses.py", "test_sharded_objectives.py",
                 "test_blockwise_losses.py", "test_diagnostics.py", "test_sequence_models.py",
                 "test_molecules_train.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)  # Stable: the order within a file is kept.


SHARED_DATA = pathlib.Path(os.environ.get(
    "CMIM_SHARED_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))


def xla_flags(device_count: int | None) -> str:
  """This process's XLA flags (the same code generation) for a child process with `device_count`
  simulated CPU devices, or None for the machine's real devices."""
  setting = f"{_DEVICE_COUNT_FLAG}={device_count}" if device_count else ""
  return re.sub(rf"{_DEVICE_COUNT_FLAG}=\d+", setting, os.environ["XLA_FLAGS"]).strip()


def shared_data_path(relative: str) -> pathlib.Path:
  """A file under ../shared/data, or a pytest skip naming what is missing."""
  path = SHARED_DATA / relative
  if not path.exists():
    pytest.skip(f"{path} is absent (shared datasets are only on developer and CI machines; "
                "set CMIM_SHARED_DATA to their folder).")
  return path


def make_synthetic_digits(num: int, seed: int, image_size: int = 28):
  """uint8 images [num, S, S] of 10 classes (a bright bar whose position is the class) + noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, num).astype(np.uint8)
  images = rng.integers(0, 60, (num, image_size, image_size)).astype(np.uint8)
  for i, label in enumerate(labels):
    row = 2 + 2 * int(label)
    images[i, row:row + 3, 4:24] = 255
  return images, labels


def write_synthetic_mnist(folder: pathlib.Path, num_train: int = 512, num_test: int = 128):
  folder.mkdir(parents=True, exist_ok=True)
  for prefix, num, seed in (("train", num_train, 0), ("t10k", num_test, 1)):
    images, labels = make_synthetic_digits(num, seed)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
  return folder


@pytest.fixture(scope="session")
def synthetic_mnist_dir(tmp_path_factory) -> pathlib.Path:
  """A folder with the four MNIST IDX files holding small synthetic digits."""
  return write_synthetic_mnist(tmp_path_factory.mktemp("synthetic_mnist"))


def make_tiny_config(data_dir: pathlib.Path):
  """The MNIST config shrunk to seconds: IDX files in `data_dir`, a small MLP, a few steps."""
  config = mnist_config.get_config()
  config.data.data_dir = str(data_dir)
  config.data.allow_fallback = False
  config.data.batch_size = 32
  config.model.hidden_sizes = (64,)
  config.model.latent_dim = 8
  config.train.num_steps = 6
  config.train.log_every_steps = 2
  config.checkpoint.every_steps = 3
  config.eval.batch_size = 64
  config.eval.likelihood_samples = 2  # The generative evaluation kept cheap (tests of it turn
  config.eval.pictures = False  # these back on).
  config.eval.frechet = False
  return config


@pytest.fixture
def tiny_config(synthetic_mnist_dir):
  """The MNIST config shrunk to seconds: synthetic data, a small MLP, a few steps."""
  return make_tiny_config(synthetic_mnist_dir)
