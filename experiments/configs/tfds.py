"""cMIM on any TensorFlow Datasets image set (docs/data.md, "Your own data").

Needs the optional extra: pip install 'cmim-jax[tfds]'. Run:
  python -m experiments.main --config=experiments/configs/tfds.py \
      --config.data.tfds_name=cifar10 --config.model.encoder=conv --workdir=/tmp/cmim_cifar10

Splits are TFDS split strings (`data.train_split`, `data.test_split`, `data.val_split`; "" = none,
e.g. "train[:90%]" / "train[90%:]"); the features read are `data.image_key` and `data.label_key`
("" = no labels). `data.data_dir` is TFDS's data folder ("" = its default). Variants and
overrides as in `mnist.py`.
"""

import ml_collections

from experiments.configs import own_images


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = own_images.get_config("tfds", arg)
  config.data.tfds_name = ""
  config.data.train_split = "train"
  config.data.test_split = "test"
  config.data.val_split = ""
  config.data.image_key = "image"
  config.data.label_key = "label"
  return config
