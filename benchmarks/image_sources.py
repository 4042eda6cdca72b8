"""Your own images: load and batch throughput of the npz and image_folder sources vs the train
step's demand (images/s).

  python -m benchmarks.image_sources --mnist_dir=../shared/data/mnist [--num_images=10000]
      [--steps=200]

The first `--num_images` MNIST training digits (plus 1/6 as many test digits) are written once to
a temporary npz archive and a PNG tree (train/, test/, a folder per class). Figures, at the
default `experiments/configs/npz.py` (batch 128, MLP 512-512, discretised logistic):
  1. loaded: images/s of `image_sources.load_npz` and of `image_sources.load_image_folder`
     (Pillow decode per file), from the files to the uint8 arrays of the task;
  2. batched: images/s served as global device batches by the `device` pipeline
     (`DeviceBatcher`, gathered on the devices) and by the `stream` pipeline (Grain over the
     arrays, `StreamBatcher`), over `--steps` batches;
  3. demand: images/s of the jitted train step on those batches, compilation excluded.
Results are recorded in benchmarks/RESULTS.md.
"""

import pathlib
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from cmim_jax import objectives, sharding, training
from cmim_jax.data import batching, image_sources, mnist, streaming
from cmim_jax.tasks import images as image_tasks
from experiments.configs import image_folder as image_folder_config
from experiments.configs import npz as npz_config

_MNIST_DIR = flags.DEFINE_string("mnist_dir", "../shared/data/mnist", "MNIST IDX folder.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 10_000, "Training digits written and read.")
_STEPS = flags.DEFINE_integer("steps", 200, "Batches timed for figures 2 and 3.")


def _rate(count: int, seconds: float) -> str:
  return f"{count / seconds:,.0f}/s ({count:,} in {seconds:.2f} s)"


def _write_sources(folder: pathlib.Path, num_train: int) -> tuple[pathlib.Path, pathlib.Path]:
  digits = mnist.read_idx_folder(_MNIST_DIR.value, mnist.SPECS["mnist"], "benchmark")
  splits = {"train": (digits.train_images[:num_train, ..., 0], digits.train_labels[:num_train]),
            "test": (digits.test_images[:num_train // 6, ..., 0],
                     digits.test_labels[:num_train // 6])}
  archive = folder / "mnist.npz"
  np.savez(archive, **{f"{split}_{kind}": array for split, arrays in splits.items()
                       for kind, array in zip(("images", "labels"), arrays)})
  for split, (images, labels) in splits.items():
    for i, (image, label) in enumerate(zip(images, labels)):
      (folder / "png" / split / str(label)).mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(folder / "png" / split / str(label) / f"{i:05d}.png")
  return archive, folder / "png"


def main(argv):
  del argv
  folder = pathlib.Path(tempfile.mkdtemp(prefix="image_sources_"))
  archive, png_root = _write_sources(folder, _NUM_IMAGES.value)
  config = npz_config.get_config()
  config.data.data_dir = str(archive)
  folder_data = image_folder_config.get_config().data
  folder_data.data_dir = str(png_root)
  for name, load, data in (("npz", image_sources.load_npz, config.data),
                           ("image_folder", image_sources.load_image_folder, folder_data)):
    start = time.perf_counter()
    dataset = load(data)
    count = len(dataset.train_images) + len(dataset.test_images)
    print(f"1. loaded ({name}): {_rate(count, time.perf_counter() - start)}")

  task = image_tasks.ImageTask(dataset, config)
  mesh = sharding.make_data_mesh()
  batch_size, steps = config.data.batch_size, _STEPS.value
  device = batching.DeviceBatcher(task.train_arrays, batch_size, mesh, config.seed)
  jax.block_until_ready(device.batch(0))
  start = time.perf_counter()
  for step in range(1, steps + 1):
    batch = device.batch(step)
  jax.block_until_ready(batch)
  print(f"2. batched (device pipeline): {_rate(steps * batch_size, time.perf_counter() - start)}")
  stream = streaming.StreamBatcher(task.train_source(), batch_size, mesh, config.seed, steps)
  start = time.perf_counter()
  for local in stream.iterator():
    jax.block_until_ready(stream.to_global(local))
  print(f"2. batched (stream pipeline): {_rate(steps * batch_size, time.perf_counter() - start)}")

  method = objectives.get_method(config.loss.method)
  _, state, train_step = training.setup(config, method, task, mesh, jax.random.key(0))
  key = jax.random.key(1)
  state, metrics = train_step(state, device.batch(0), key)  # Compiles.
  jax.block_until_ready(metrics)
  batches = [device.batch(step) for step in range(1, steps + 1)]
  start = time.perf_counter()
  for batch in batches:
    state, metrics = train_step(state, batch, key)
  jax.block_until_ready(metrics)
  print(f"3. demand (jitted train step, {task.likelihood}): "
        f"{_rate(steps * batch_size, time.perf_counter() - start)}")


if __name__ == "__main__":
  app.run(main)
