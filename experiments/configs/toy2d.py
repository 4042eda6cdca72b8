"""The 2-D toy: 1,000 random points in the plane, a 2-D latent; compare the latent geometry.

Run:
  python -m experiments.main --config=experiments/configs/toy2d.py --workdir=/tmp/toy2d_cmim
  python -m experiments.main --config=experiments/configs/toy2d.py --workdir=/tmp/toy2d_mim \
      --config.loss.method=mim

summary.json reports the reconstruction loss and the angle-uniformity and radius statistics of the
mean encodings (`cmim_jax.tasks.toy2d.geometry_statistics`). `toy2d.py:quick` is a seconds-long
smoke variant.
"""

import ml_collections

from experiments.configs import mnist


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = mnist.get_config()
  config.data = ml_collections.ConfigDict()
  config.data.name = "toy2d"
  config.data.num_points = 1000
  config.data.distribution = "uniform"  # "uniform" on [-1, 1]^2 or "gaussian".
  config.data.batch_size = 200
  # "device": the training set is placed on the devices and batches are gathered there (small
  # data sets); "stream": each process reads its rows of every batch from the host with a Grain
  # pipeline (large corpora; cmim_jax/data/streaming.py), with these readers and read-ahead.
  config.data.pipeline = "device"
  config.data.reader_threads = 2
  config.data.prefetch_batches = 4

  config.model.encoder = "mlp"
  config.model.decoder = "mlp_gaussian"
  config.model.latent_dim = 2
  config.loss.temperature = 0.1  # The MNIST default when docs/results.md section 1 was run.
  config.model.hidden_sizes = (64, 64)

  config.train.num_steps = 3000
  config.train.log_every_steps = 100
  config.checkpoint.every_steps = 1000

  if arg == "quick":
    config.train.num_steps = 100
    config.train.log_every_steps = 50
    config.checkpoint.every_steps = 100
  elif arg:
    raise ValueError(f"Unknown config variant {arg!r}; use 'quick' or nothing.")
  return config
