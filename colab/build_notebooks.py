"""Writes the Colab notebooks in colab/ from the cell sources below (outputs stripped).

  python colab/build_notebooks.py

Edit the sources here, not the .ipynb files, so that reviews see plain Python.
"""

import pathlib

import nbformat

REPO_URL = "https://github.com/cmim-jax/cmim-jax"
COLAB_URL = "https://colab.research.google.com/github/cmim-jax/cmim-jax/blob/main/colab/"
HERE = pathlib.Path(__file__).resolve().parent

INSTALL = f'''# Install: on Colab from the public repository; locally, use the checkout this notebook is in.
import os, pathlib, subprocess, sys
try:
  import google.colab  # noqa: F401
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{REPO_URL}"], check=True)
except ImportError:
  root = next(p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]
              if (p / "pyproject.toml").exists())
  sys.path.insert(0, str(root))
  os.chdir(root)
'''


def badge(name: str) -> str:
  return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
          f"({COLAB_URL}{name})")


def notebook(name: str, cells: list[tuple[str, str]]) -> None:
  nb = nbformat.v4.new_notebook()
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
  nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else
              nbformat.v4.new_code_cell(src) for kind, src in cells]
  nbformat.write(nb, HERE / name)


NOTEBOOKS = {}

NOTEBOOKS["02_reuse_the_loss.ipynb"] = [
    ("md", f"""# Reuse the cMIM loss in your own model

{badge("02_reuse_the_loss.ipynb")}

`cmim_jax.losses` is a single module that imports only `jax`. This notebook trains a small Flax
auto-encoder of its own on toy data with `optax`, calling the loss and nothing else of cmim-jax:
the call and its shapes, masks for padded batches, `jit`, and data-parallel sharding."""),
    ("md", """## Settings
`SMALL = True` runs in seconds on a CPU; `False` trains longer on a bigger batch."""),
    ("code", "SMALL = True\nSTEPS, BATCH = (200, 64) if SMALL else (3000, 512)"),
    ("md", "## Install\nOn Colab this installs the package from GitHub; locally it uses this checkout."),
    ("code", INSTALL),
    ("md", """## The loss call and its shapes
`cmim_loss(log_px_given_z [B], z [B, D], mu [B, D], logvar [B, D], *, temperature, denominator,
contrastive_weight, mask)` returns a scalar: A-MIM minus the weighted contrastive log-probability of
each mean picking its own sample among the batch. `contrastive_log_prob` gives the per-row term."""),
    ("code", """import jax, jax.numpy as jnp
from cmim_jax import losses

B, D = 8, 4
k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
mu = jax.random.normal(k1, (B, D))
logvar = jnp.full((B, D), -2.0)
z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k2, (B, D))
log_px = -jnp.abs(jax.random.normal(k3, (B,)))  # stand-in for log p(x|z), one per row
print("contrastive_log_prob:", losses.contrastive_log_prob(mu, z, temperature=0.1).shape)
print("cmim_loss:", losses.cmim_loss(log_px, z, mu, logvar, temperature=0.1))"""),
    ("md", """## Masks for padded batches
Padding rows (marked False in `mask`) are left out of every mean and of the contrastive
denominators, so a padded batch gives exactly the loss of the unpadded one."""),
    ("code", """pad = 3
mask = jnp.arange(B + pad) < B
padded = lambda a: jnp.concatenate([a, 1e3 * jnp.ones((pad, *a.shape[1:]))])
full = losses.cmim_loss(log_px, z, mu, logvar, temperature=0.1)
masked = losses.cmim_loss(padded(log_px), padded(z), padded(mu), padded(logvar),
                          temperature=0.1, mask=mask)
print(full, masked)
assert jnp.allclose(full, masked, rtol=1e-5)"""),
    ("md", """## Your own model
Any encoder that outputs (mu, logvar) and any decoder that scores x works. Here: MLPs on 2-D points
lying on three noisy rings, with a Gaussian likelihood of fixed variance."""),
    ("code", """import flax.linen as nn
import numpy as np
import optax

class Encoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.gelu(nn.Dense(64)(x))
    return nn.Dense(2)(h), jnp.clip(nn.Dense(2)(h), -6.0, 2.0)

class Decoder(nn.Module):
  @nn.compact
  def __call__(self, z):
    return nn.Dense(2)(nn.gelu(nn.Dense(64)(z)))

class Model(nn.Module):
  def setup(self):
    self.encoder, self.decoder = Encoder(), Decoder()
  def __call__(self, x, key):
    mu, logvar = self.encoder(x)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    return mu, logvar, z, self.decoder(z)

rng = np.random.default_rng(0)
angles = rng.uniform(0, 2 * np.pi, 3000)
radii = rng.choice([0.5, 1.0, 1.5], 3000)
data = (np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        + 0.05 * rng.standard_normal((3000, 2))).astype(np.float32)

model = Model()
params = model.init(jax.random.key(0), data[:2], jax.random.key(1))["params"]
tx = optax.adam(1e-3)
opt_state = tx.init(params)"""),
    ("md", """## A jitted train step that calls the loss
The Gaussian log-likelihood log p(x|z) with variance 0.01 is computed by hand; the rest is the
library's `cmim_loss`."""),
    ("code", """def loss_fn(params, x, key):
  mu, logvar, z, x_mean = model.apply({"params": params}, x, key)
  log_px = losses.gaussian_log_prob(x, x_mean, jnp.full_like(x, jnp.log(0.01)))
  return losses.cmim_loss(log_px, z, mu, logvar, temperature=0.1)

@jax.jit
def train_step(params, opt_state, x, key):
  loss, grads = jax.value_and_grad(loss_fn)(params, x, key)
  updates, opt_state = tx.update(grads, opt_state)
  return optax.apply_updates(params, updates), opt_state, loss"""),
    ("md", """## Data-parallel sharding
One mesh axis `data` over all devices: parameters replicated, batches split on their first axis.
`jit` inserts the collectives; the contrastive term still sees the whole global batch."""),
    ("code", """from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

mesh = Mesh(np.array(jax.devices()), ("data",))
replicated, batch_sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
params, opt_state = jax.device_put((params, opt_state), replicated)
batch = BATCH // len(jax.devices()) * len(jax.devices())
losses_seen = []
for step in range(STEPS):
  idx = rng.integers(0, len(data), batch)
  x = jax.device_put(data[idx], batch_sharded)
  params, opt_state, loss = train_step(params, opt_state, x, jax.random.key(step))
  losses_seen.append(float(loss))
print(f"{len(jax.devices())} device(s); loss {losses_seen[0]:.2f} -> {losses_seen[-1]:.2f}")
assert losses_seen[-1] < losses_seen[0]"""),
    ("md", "## The latent codes\nThe encoder means of the three rings, coloured by ring."),
    ("code", """import matplotlib.pyplot as plt
mu, _ = model.apply({"params": params}, data, method=lambda m, x: m.encoder(x))
plt.figure(figsize=(4, 4))
plt.scatter(mu[:, 0], mu[:, 1], c=radii, s=3, cmap="viridis")
plt.title("cMIM mean encodings")
plt.show()"""),
]

NOTEBOOKS["03_toy_geometry.ipynb"] = [
    ("md", f"""# The 2-D toy: latent geometry of MIM and cMIM

{badge("03_toy_geometry.ipynb")}

The paper's first experiment: encode 1,000 random points of the plane into a 2-D latent space and
look at where the encoder means land. The contrastive term of cMIM asks each mean to be closer in
angle to its own sample than to the other rows' samples, which should spread the codes around the
circle; we check this with histograms of angles and radii and a Rayleigh test of uniform angles."""),
    ("md", """## Settings
`SMALL = True` trains each model for a few hundred steps (a minute on a CPU); `False` uses the
experiment's full length."""),
    ("code", "SMALL = True\nNUM_STEPS = 300 if SMALL else 3000"),
    ("md", "## Install\nOn Colab this installs the package from GitHub; locally it uses this checkout."),
    ("code", INSTALL),
    ("md", """## Train MIM and cMIM
Both runs use `experiments/configs/toy2d.py` and differ only in `loss.method`: same points, same
MLPs, same optimiser and steps. Each run writes checkpoints and a summary into its own folder."""),
    ("code", """import tempfile
from cmim_jax import training
from experiments.configs import toy2d

workdir = pathlib.Path(tempfile.mkdtemp(prefix="toy2d_"))
summaries = {}
for method in ("mim", "cmim"):
  config = toy2d.get_config()
  config.loss.method = method
  config.train.num_steps = NUM_STEPS
  config.checkpoint.every_steps = NUM_STEPS
  summaries[method] = training.train_and_evaluate(config, workdir / method)
  print(method, {k: round(v, 4) for k, v in summaries[method].items() if isinstance(v, float)})"""),
    ("md", """## The mean encodings
`load_trained` restores a run's checkpoint and the config saved with it; `embed_arrays` returns
the encoder means (and the decoder's informative embedding)."""),
    ("code", """from cmim_jax import embed

latents = {}
for method in summaries:
  trained = embed.load_trained(workdir / method)
  latents[method] = embed.embed_arrays(trained, trained.task.points)["mean"]
  print(method, latents[method].shape)"""),
    ("md", "## Angles and radii\nScatter of the codes, then histograms of their angles and radii."),
    ("code", """import matplotlib.pyplot as plt
import numpy as np

figure, axes = plt.subplots(3, 2, figsize=(8, 10))
for column, (method, z) in enumerate(latents.items()):
  axes[0, column].scatter(z[:, 0], z[:, 1], s=3)
  axes[0, column].set_title(method)
  axes[0, column].set_aspect("equal")
  axes[1, column].hist(np.degrees(np.arctan2(z[:, 1], z[:, 0])), bins=36, range=(-180, 180))
  axes[1, column].set_xlabel("angle (degrees)")
  axes[2, column].hist(np.linalg.norm(z, axis=1), bins=40)
  axes[2, column].set_xlabel("radius")
figure.tight_layout()
plt.show()"""),
    ("md", """## Uniformity of the angles
The Rayleigh test's p-value is small when the angles cluster around a direction; the KS test
compares their distribution with the uniform one. The radius coefficient of variation measures
how much the codes' distances from the origin spread."""),
    ("code", """from cmim_jax.tasks.toy2d import geometry_statistics

for method, z in latents.items():
  stats = geometry_statistics(z)
  print(f"{method:5s} Rayleigh p={stats['angle_rayleigh_p']:.3g}  KS p={stats['angle_ks_p']:.3g}  "
        f"radius CV={stats['radius_coefficient_of_variation']:.3f}")"""),
]


def main():
  for name, cells in NOTEBOOKS.items():
    notebook(name, cells)
    print("wrote", HERE / name)


if __name__ == "__main__":
  main()
