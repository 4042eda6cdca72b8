"""The settings shared by the configs of your own images (`npz.py`, `image_folder.py`,
`tfds.py`): the MNIST config's model, loss and training, with 8-bit pixels scored by a
discretised likelihood instead of binarised ones. See docs/data.md ("Your own data")."""

import ml_collections

from experiments.configs import mnist


def get_config(name: str, arg: str = "") -> ml_collections.ConfigDict:
  """The MNIST config (variant `arg`: "", "quick", "paper", "paper_perceiver") reading
  `data.name` = `name` from `cmim_jax.data.image_sources`."""
  config = mnist.get_config(arg)
  data = config.data
  data.name = name
  for field in ("source", "allow_fallback", "mirrors"):  # Of the MNIST source chain only.
    del data[field]
  data.data_dir = ""  # The .npz archive or the image folder (tfds: its download folder, optional).
  data.binarize = False  # 8-bit intensities; True (with model.likelihood=bernoulli) binarises.
  data.test_fraction = 0.2  # Used when the source has no test split of its own.
  data.val_fraction = 0.0  # Used when it has no val split: > 0 carves one from the rest.
  data.image_size = 0  # image_folder: resize every image to this many pixels a side; 0 = keep.
  data.channels = 0  # image_folder: 1 (grey) or 3 (RGB); 0 = those of the first image.
  # "auto" follows the data: Bernoulli when data.binarize, else "discretized_logistic"; or
  # "categorical" (a 256-way softmax per pixel channel; small images), or "bernoulli".
  config.model.likelihood = "auto"
  # The Frechet proxy's classifier is for MNIST-like data (10 labelled classes, docs/generation.md);
  # your own images get the pictures and the likelihood bound.
  config.eval.frechet = False
  return config
