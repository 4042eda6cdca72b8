"""The generative end-of-run evaluation: the likelihood bound of every method with a decoder and,
for image tasks, the pictures (PNG) and the Frechet-distance sample-quality proxy.

Config fields (all under `eval`, all optional):
  likelihood_samples: K of the importance-weighted bound (0 = off; default 10).
  likelihood_examples: held-out examples it scores (0 = all; default 1,000).
  likelihood_chunk: samples per chunk (0 = min(K, 64)).
  pictures: write samples.png, reconstructions.png, interpolations.png (images; default True).
  frechet: the Frechet-distance proxy on the test set (images; default True).
  frechet_cache_dir: where the feature classifier is cached ("" = the data cache folder).
"""

from __future__ import annotations

import pathlib
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from cmim_jax.generation import frechet, likelihood, pictures


def held_out_split(task) -> str:
  """The split the generative metrics score: "test" where the task has one."""
  return "test" if "test" in task.embedding_splits else task.embedding_splits[-1]


def likelihood_metrics(task, model, params, mesh: Mesh, num_samples: int, num_examples: int = 0,
                       chunk_size: int = 0, batch_size: int = 256, seed: int = 0,
                       split: str | None = None) -> dict[str, float]:
  """The K-sample bound on the first `num_examples` (0: all) held-out inputs of `task`, in nats
  per example and bits per dimension (see `likelihood.summarize`)."""
  inputs = task.likelihood_inputs(split or held_out_split(task))
  inputs = inputs[:num_examples or None]
  out = likelihood.estimate(model, params, inputs, mesh, jax.random.key(seed), num_samples,
                            chunk_size or None, batch_size)
  return likelihood.summarize(out["bound"], out["elbo"], task.likelihood_dimensions(inputs),
                              num_samples)


def image_metrics(task, model, params, workdir: pathlib.Path, eval_config, seed: int,
                  write_files: bool) -> dict:
  """Pictures into `workdir` and the Frechet-distance proxy of as many prior samples as half the
  test images."""
  test_images, _ = task.embedding_inputs(held_out_split(task))
  metrics = {}
  key = jax.random.key(seed + 2)
  if eval_config.get("pictures", True) and write_files:
    metrics["pictures"] = pictures.write_pictures(model, params, test_images, workdir, key)
  if eval_config.get("frechet", True):
    train_images, train_annotations = task.embedding_inputs("train")
    classifier = frechet.cached_classifier(
        task.source.split(":")[0] + f"-{train_images.shape[1]}px", train_images,
        train_annotations["labels"], eval_config.get("frechet_cache_dir") or None)
    latent_dim = model.apply({"params": params}, test_images[:1], method="encode")[0].shape[1]
    decode = jax.jit(lambda z: pictures.image_means(model, params, z))
    z = jax.random.normal(jax.random.fold_in(key, 1), (len(test_images) // 2, latent_dim))
    samples = np.concatenate([np.asarray(decode(z[i:i + 1000])) for i in range(0, len(z), 1000)])
    metrics.update(frechet.sample_quality(classifier, test_images, samples, seed))
  return metrics


def without_generative_eval(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` whose end-of-run evaluation skips the likelihood bound, the pictures and
  the Frechet proxy (`end_of_run` then adds nothing)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.eval.likelihood_samples = 0
    config.eval.pictures = False
    config.eval.frechet = False
  return config


def end_of_run(config: ml_collections.ConfigDict, task, model, params, mesh: Mesh,
               workdir: pathlib.Path) -> dict:
  """The generative metrics for summary.json (nothing for an encoder-only model)."""
  from cmim_jax.tasks import images  # pylint: disable=g-import-not-at-top
  if model.decoder is None:
    return {}
  start = time.perf_counter()
  eval_config = config.eval
  metrics = {}
  num_samples = eval_config.get("likelihood_samples", 10)
  if num_samples:
    metrics.update(likelihood_metrics(
        task, model, params, mesh, num_samples, eval_config.get("likelihood_examples", 1000),
        eval_config.get("likelihood_chunk", 0), seed=config.seed))
  if isinstance(task, images.ImageTask):
    metrics.update(image_metrics(task, model, params, pathlib.Path(workdir), eval_config,
                                 config.seed, write_files=jax.process_index() == 0))
  logging.info("Generative evaluation took %.1f s.", time.perf_counter() - start)
  return metrics
