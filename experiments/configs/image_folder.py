"""cMIM on a folder of image files, one subfolder per class (docs/data.md, "Your own data").

Run:
  python -m experiments.main --config=experiments/configs/image_folder.py \
      --config.data.data_dir=/path/to/images --config.data.image_size=32 \
      --config.data.channels=3 --workdir=/tmp/cmim_folder

`data_dir` holds one subfolder per class (or only images: no labels), optionally inside
`train/`, `val/` and `test/` (else cut by `data.test_fraction` / `data.val_fraction`). Pillow reads
PNG, JPEG, BMP, GIF, TIFF, WebP, PPM; each image becomes `data.channels` channels (1 grey, 3 RGB)
of `data.image_size` pixels a side; unreadable files are skipped and counted in summary.json.
Variants and overrides as in `mnist.py`, e.g. `image_folder.py:quick`.
"""

import ml_collections

from experiments.configs import own_images


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  return own_images.get_config("image_folder", arg)
