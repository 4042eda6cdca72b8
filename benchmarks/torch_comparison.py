"""The MNIST MLP cMIM train step in JAX against the same model and loss in PyTorch, on the CPU.

  python -m benchmarks.torch_comparison [--batch_sizes=32,128,512,2048]

Needs PyTorch (`pip install torch`; not a dependency of the project): without it the benchmark
prints a message and exits. Both sides train the default `experiments/configs/mnist.py` model
(MLP 784-512-512 -> mu, logvar [16] with soft-clamped log-variance; decoder 16-512-512-784 with
Bernoulli pixels; tanh-approximated GELU as Flax's default), on one fixed batch of uint8 images,
dynamically binarised each step, with the cMIM loss (A-MIM minus the contrastive log-probability
with the mean denominator, temperature 0.1) and Adam (lr 1e-3) after global-norm clipping at
1000. JAX runs `training.make_train_step`'s jitted step; PyTorch runs eagerly, with
`torch.set_num_threads` pinned to the cores this process may use. Repeats alternate between the
two (paired); the table gives medians of examples/s.
"""

import math
import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from cmim_jax import objectives, sharding, training
from cmim_jax.data.mnist import ImageDataset
from cmim_jax.tasks.images import ImageTask
from experiments.configs import mnist as mnist_config

try:
  import torch
except ImportError:  # Optional: the benchmark says so and exits.
  torch = None

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32", "128", "512", "2048"], "Batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per repeat; 0 = max(20, 16384 // B).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats of each side.")


def _images(batch_size: int) -> np.ndarray:
  return np.random.default_rng(0).integers(0, 256, (batch_size, 28, 28, 1), dtype=np.uint8)


class JaxStep:
  """The project's jitted train step on one fixed batch."""

  def __init__(self, batch_size: int):
    config = mnist_config.get_config()
    # The torch model's latent size and temperature.
    config.model.latent_dim, config.loss.temperature = 16, 0.1
    config.data.batch_size = batch_size
    images = _images(batch_size)
    labels = np.zeros(batch_size, np.int32)
    task = ImageTask(ImageDataset(images, labels, images, labels, "synthetic"), config)
    mesh = sharding.make_data_mesh()
    _, self.state, self.step = training.setup(config, objectives.get_method("cmim"), task, mesh,
                                              jax.random.key(0))
    self.batch = jax.device_put({"image": images}, sharding.batch_sharded(mesh))
    self.key = jax.random.key(1)
    self.run(1)  # Compile.

  def run(self, steps: int) -> None:
    for _ in range(steps):
      self.state, metrics = self.step(self.state, self.batch, self.key)
    jax.block_until_ready((self.state, metrics))


def _soft_clamp(x, low, high):
  x = high - torch.nn.functional.softplus(high - x)
  return torch.clamp(low + torch.nn.functional.softplus(x - low), low, high)


class TorchCmim(torch.nn.Module if torch else object):
  """The same auto-encoder as `GaussianMLPEncoder` + `BernoulliMLPDecoder`."""

  def __init__(self, latent_dim=16, hidden=512, pixels=784):
    super().__init__()
    gelu = torch.nn.GELU(approximate="tanh")
    self.encoder = torch.nn.Sequential(torch.nn.Linear(pixels, hidden), gelu,
                                       torch.nn.Linear(hidden, hidden), gelu)
    self.mu = torch.nn.Linear(hidden, latent_dim)
    self.logvar = torch.nn.Linear(hidden, latent_dim)
    self.decoder = torch.nn.Sequential(torch.nn.Linear(latent_dim, hidden), gelu,
                                       torch.nn.Linear(hidden, hidden), gelu,
                                       torch.nn.Linear(hidden, pixels))

  def loss(self, x, temperature=0.1):
    """cMIM loss of binary pixels x [B, 784]."""
    h = self.encoder(x)
    mu, logvar = self.mu(h), _soft_clamp(self.logvar(h), -8.0, 4.0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        self.decoder(z), x, reduction="none").sum(-1)
    log_2pi = math.log(2 * math.pi)
    log_q = -0.5 * (log_2pi + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)
    log_prior = -0.5 * (log_2pi + z ** 2).sum(-1)
    a_mim = -(log_px + 0.5 * (log_q + log_prior)).mean()
    u = torch.nn.functional.normalize(mu, dim=-1)
    v = torch.nn.functional.normalize(z, dim=-1)
    logits = u @ v.T / temperature
    batch = x.shape[0]
    eye = torch.eye(batch, dtype=torch.bool)
    weights = torch.where(eye, 1.0, 1.0 / (batch - 1))
    log_denominator = torch.logsumexp(logits + torch.log(weights), dim=1)
    contrastive = (torch.diagonal(logits) - log_denominator).mean()
    return a_mim - contrastive


class TorchStep:
  """The same step in PyTorch, eager."""

  def __init__(self, batch_size: int):
    torch.manual_seed(0)
    self.model = TorchCmim()
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
    self.images = torch.from_numpy(_images(batch_size).reshape(batch_size, -1))
    self.run(1)

  def run(self, steps: int) -> None:
    for _ in range(steps):
      x = torch.bernoulli(self.images.float() / 255.0)
      loss = self.model.loss(x)
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1000.0)
      self.optimizer.step()


def _rate(step, steps: int, batch_size: int) -> float:
  start = time.perf_counter()
  step.run(steps)
  return steps * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  if torch is None:
    print("PyTorch is not installed (pip install torch); skipping the comparison.")
    return
  cores = len(os.sched_getaffinity(0))
  torch.set_num_threads(cores)
  print(f"jax {jax.__version__} ({jax.device_count()} x {jax.devices()[0].device_kind}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {cores} cores")
  print("| batch | JAX examples/s | PyTorch examples/s | JAX / PyTorch |\n| --- | --- | --- | --- |")
  for batch_size in map(int, _BATCH_SIZES.value):
    steps = _STEPS.value or max(20, 16384 // batch_size)
    sides = (JaxStep(batch_size), TorchStep(batch_size))
    rates = ([], [])
    for _ in range(_REPEATS.value):
      for side, side_rates in zip(sides, rates):
        side_rates.append(_rate(side, steps, batch_size))
    jax_rate, torch_rate = (statistics.median(r) for r in rates)
    print(f"| {batch_size} | {jax_rate:,.0f} | {torch_rate:,.0f} | {jax_rate / torch_rate:.2f} |",
          flush=True)


if __name__ == "__main__":
  app.run(main)
