"""Pictures of an image model: prior samples, reconstructions, latent interpolations (PNG).

Figures are drawn on an explicit `matplotlib.figure.Figure` with the Agg canvas, so nothing here
touches matplotlib's global backend or needs a display. A decoder's outputs become images through
`image_means`: the decoder's own `mean_image(outputs)` when it defines one, else the mean of its
pixel likelihood (`model.likelihood`, see `cmim_jax.models.likelihoods`) or of its Gaussian.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from cmim_jax.models import likelihoods

# Decoder likelihood -> its mean image, for decoders without a pixel likelihood or `mean_image`.
MEAN_OF_LIKELIHOOD = {
    likelihoods.gaussian_log_likelihood: lambda outputs: outputs[:, 0],
}


def image_means(model, params, z: jax.Array) -> jax.Array:
  """Decodes z [N, D] to mean images [N, H, W, C] in the data's range."""
  outputs, _ = model.apply({"params": params}, z, method="decode")
  decoder = model.decoder
  if hasattr(decoder, "mean_image"):
    return decoder.mean_image(outputs)
  if getattr(decoder, "likelihood", None) in likelihoods.PIXEL_LIKELIHOODS:
    return likelihoods.PIXEL_LIKELIHOODS[decoder.likelihood].mean(outputs)
  mean = MEAN_OF_LIKELIHOOD.get(decoder.log_likelihood)
  if mean is None:
    raise NotImplementedError(f"{type(decoder).__name__} has no mean_image and an unknown "
                              "likelihood; give the decoder a mean_image(outputs) method.")
  return mean(outputs.astype(jnp.float32))


def interpolation_latents(start: np.ndarray, end: np.ndarray, num_steps: int) -> np.ndarray:
  """Straight lines from start [P, D] to end [P, D]: [P, num_steps, D], ends included."""
  t = np.linspace(0.0, 1.0, num_steps)[None, :, None]
  return (1.0 - t) * start[:, None] + t * end[:, None]


def save_grid(path: pathlib.Path, images: np.ndarray, title: str) -> pathlib.Path:
  """Writes images [R, C, H, W, channels] (values in [0, 1]) as one R x C grid PNG."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  rows, cols, height, width, channels = images.shape
  tiled = np.ones((rows * (height + 1) - 1, cols * (width + 1) - 1, channels), np.float32)
  for r in range(rows):
    for c in range(cols):
      tiled[r * (height + 1):r * (height + 1) + height,
            c * (width + 1):c * (width + 1) + width] = images[r, c]
  figure = Figure(figsize=(cols * 0.45 + 0.2, rows * 0.45 + 0.5), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_axes((0.01, 0.01, 0.98, 0.88))
  axes.imshow(np.clip(tiled.squeeze(-1) if channels == 1 else tiled, 0.0, 1.0),
              cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  axes.set_axis_off()
  figure.suptitle(title, fontsize=9)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path)
  return path


def write_pictures(model, params, test_images: np.ndarray, out_dir: pathlib.Path, key: jax.Array,
                   grid: int = 8, num_pairs: int = 6, num_steps: int = 10) -> dict[str, str]:
  """Writes samples.png (grid x grid prior samples), reconstructions.png (test images above their
  reconstructions from z = mu) and interpolations.png (mu of test pairs joined by straight lines)
  into `out_dir`. `test_images` [N, H, W, C] in [0, 1], N >= max(grid, 2 * num_pairs).

  Returns:
    name -> path of each file written.
  """
  decode = jax.jit(lambda z: image_means(model, params, z))
  encode = jax.jit(lambda x: model.apply({"params": params}, x, method="encode")[0])
  shape = test_images.shape[1:]
  latent_dim = encode(test_images[:1]).shape[1]
  prior = np.asarray(decode(jax.random.normal(key, (grid * grid, latent_dim))))
  originals = test_images[:2 * grid]
  recon = np.asarray(decode(encode(originals)))
  pairs = encode(test_images[:2 * num_pairs])
  lines = interpolation_latents(np.asarray(pairs[:num_pairs]), np.asarray(pairs[num_pairs:]),
                                num_steps)
  interpolated = np.asarray(decode(lines.reshape(-1, latent_dim)))
  reconstruction_rows = np.stack([originals[:grid], recon[:grid], originals[grid:],
                                  recon[grid:]])
  files = {
      "samples": save_grid(out_dir / "samples.png", prior.reshape(grid, grid, *shape),
                           "Decoded prior samples z ~ N(0, I) (mean images)"),
      "reconstructions": save_grid(out_dir / "reconstructions.png", reconstruction_rows,
                                   "Test images (rows 1, 3) and reconstructions from z = mu"),
      "interpolations": save_grid(out_dir / "interpolations.png",
                                  interpolated.reshape(num_pairs, num_steps, *shape),
                                  "Interpolations between the mu of test pairs"),
  }
  return {name: str(path) for name, path in files.items()}
