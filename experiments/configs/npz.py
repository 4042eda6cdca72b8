"""cMIM on images in a NumPy archive, e.g. a MedMNIST `.npz` (docs/data.md, "Your own data").

Run:
  python -m experiments.main --config=experiments/configs/npz.py \
      --config.data.data_dir=/path/to/pathmnist.npz --workdir=/tmp/cmim_npz

The archive holds `train_images`, `test_images` (+ `val_images`, the validation split) and their
`*_labels` (the MedMNIST layout), or one `images` (+ `labels`) pair cut by
`data.test_fraction` / `data.val_fraction`. Images uint8 (or floats in [0, 1]) [N, H, W] or
[N, H, W, C], any size and channel count; pixels are scored by a discretised logistic
(`model.likelihood`). Variants and overrides as in `mnist.py`, e.g. `npz.py:quick` or
`--config.model.encoder=conv`.
"""

import ml_collections

from experiments.configs import own_images


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return own_images.get_config("npz", arg)
