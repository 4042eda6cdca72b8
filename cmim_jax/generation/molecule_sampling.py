"""Molecules from a SMILES model's latent space: prior samples, samples around encodings (MolMIM's
z = mu(x) + r * eps), greedy or temperature decoding, and why prior samples decode invalid.

`coverage_diagnostics` measures how much of the prior N(0, I) the aggregate posterior
q(z) = mean_x q(z|x) covers: a decoder trained only on z ~ q(z|x) has never seen most of the prior's
mass when the posteriors are narrow and their means do not fill N(0, I).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from cmim_jax.data import smiles as smiles_lib
from cmim_jax.embedding import compute as embedding_compute
from cmim_jax.generation import batched, molecule_metrics
from cmim_jax.models import sequence


def decode_latents(model, params, mesh: Mesh, z: np.ndarray, length: int, key: jax.Array,
                   temperature: float = 0.0, batch_size: int = 500) -> np.ndarray:
  """Tokens int32 [N, length] decoded from z [N, D]: greedy at temperature 0, else sampled."""
  def decode(params, z, key):
    if temperature == 0.0:
      return sequence.greedy_decode(model, params, z, length)
    return sequence.sample_decode(model, params, z, length, key, temperature)
  return batched.run_keyed(batched.keyed_jit(decode, mesh), mesh, params,
                           np.asarray(z, np.float32), key, batch_size)


def around_encodings(mu: np.ndarray, radius: float, key: jax.Array) -> np.ndarray:
  """MolMIM's sampling around molecules: z = mu + radius * eps, eps ~ N(0, I). [N, D] -> [N, D]."""
  return mu + radius * np.asarray(jax.random.normal(key, mu.shape), mu.dtype)


def coverage_diagnostics(mu: np.ndarray, logvar: np.ndarray, prior_z: np.ndarray,
                         seed: int = 0) -> dict[str, float]:
  """How well the aggregate posterior covers the prior.

  Args:
    mu, logvar: [M, D] posteriors of M held-out molecules.
    prior_z: [N, D] prior samples.

  Returns:
    posterior_std_mean: mean over molecules and dimensions of the posterior standard deviation.
    mean_encoding_std: mean over dimensions of the spread (std) of the posterior means.
    aggregate_variance: mean over dimensions of Var_q(z) = Var(mu) + E[sigma^2] (1 for a perfect
      match of the prior's second moment).
    prior_norm / posterior_sample_norm: mean ||z|| / sqrt(D) of prior samples and of samples of
      the posteriors (about 1 for N(0, I)).
    prior_coverage: fraction of prior samples z whose best standardised distance to a posterior,
      min_i ||(z - mu_i) / sigma_i||^2 / D, is below the 95th percentile of the same quantity for
      posterior samples (whose own posterior is left out): 0.95 when the aggregate posterior
      covers the prior, near 0 when prior samples fall where no posterior puts mass.
  """
  rng = np.random.default_rng(seed)
  mu, logvar, prior_z = (np.asarray(a, np.float64) for a in (mu, logvar, prior_z))
  sigma = np.exp(0.5 * logvar)
  dim = mu.shape[1]
  posterior_z = mu + sigma * rng.standard_normal(mu.shape)

  def best_distance(z, exclude_self):
    d = np.stack([np.sum(((z - m) / s) ** 2, axis=1) for m, s in zip(mu, sigma)], axis=1) / dim
    if exclude_self:
      np.fill_diagonal(d, np.inf)
    return d.min(axis=1)

  threshold = np.quantile(best_distance(posterior_z, exclude_self=True), 0.95)
  return {
      "posterior_std_mean": float(sigma.mean()),
      "mean_encoding_std": float(mu.std(axis=0).mean()),
      "aggregate_variance": float((mu.var(axis=0) + (sigma**2).mean(axis=0)).mean()),
      "prior_norm": float(np.linalg.norm(prior_z, axis=1).mean() / np.sqrt(dim)),
      "posterior_sample_norm": float(np.linalg.norm(posterior_z, axis=1).mean() / np.sqrt(dim)),
      "prior_coverage": float(np.mean(best_distance(prior_z, exclude_self=False) <= threshold)),
  }


def molecule_report(trained, num_samples: int, temperatures: Sequence[float],
                    radii: Sequence[float], num_encoded: int = 1000, seed: int = 0,
                    batch_size: int = 500) -> dict:
  """Generation metrics of a trained SMILES model (a `cmim_jax.embedding.Trained`).

  For each temperature: `num_samples` prior samples decoded (validity, uniqueness, novelty vs the
  training corpus, internal diversity); for each radius r, the first `num_encoded` held-out
  molecules' z = mu + r * eps decoded (validity, uniqueness, novelty, and the fraction that
  reproduce the source molecule); the coverage diagnostics of the prior.
  """
  task, model, params, mesh = trained.task, trained.model, trained.params, trained.mesh
  length = task.seq_length
  key = jax.random.key(seed)
  test_tokens = task.test_tokens[:num_encoded]
  encoded = embedding_compute.run_batched(
      jax.jit(functools.partial(model.apply, method="encode")), mesh,
      {"params": params}, test_tokens, batch_size)
  mu, logvar = (np.asarray(a) for a in encoded)
  latent_dim = mu.shape[1]
  corpus = (molecule_metrics.canonical_set(task.train_smiles) if hasattr(task, "train_smiles")
            else None)
  sources = molecule_metrics.canonical_or_none(smiles_lib.decode_batch(task.vocab, test_tokens))
  prior_z = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), (num_samples, latent_dim)))
  report = {"num_prior_samples": num_samples, "prior": {}, "around_encodings": {}}
  for temperature in temperatures:
    tokens = decode_latents(model, params, mesh, prior_z, length, jax.random.fold_in(key, 1),
                            temperature, batch_size)
    report["prior"][f"temperature_{temperature:g}"] = molecule_metrics.generation_metrics(
        smiles_lib.decode_batch(task.vocab, tokens), corpus)
  for radius in radii:
    z = around_encodings(mu, radius, jax.random.fold_in(key, 2))
    decoded = smiles_lib.decode_batch(task.vocab, decode_latents(
        model, params, mesh, z, length, key, 0.0, batch_size))
    metrics = molecule_metrics.generation_metrics(decoded, corpus)
    canonical = molecule_metrics.canonical_or_none(decoded)
    metrics["same_as_source"] = float(np.mean([c is not None and c == s
                                               for c, s in zip(canonical, sources)]))
    report["around_encodings"][f"radius_{radius:g}"] = metrics
  report["coverage"] = coverage_diagnostics(mu, logvar, prior_z[:2000], seed)
  return report
