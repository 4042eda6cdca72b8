"""Flax modules: Gaussian encoders, decoders exposing informative embeddings, the auto-encoder."""

from __future__ import annotations

from typing import Sequence

import ml_collections

from cmim_jax.models.autoencoder import AutoEncoder, compute_dtype
from cmim_jax.models.conv import BernoulliConvDecoder, GaussianConvEncoder
from cmim_jax.models.gaussian import reparameterize, sample_prior, soft_clamp
from cmim_jax.models.mlp import BernoulliMLPDecoder, GaussianMLPDecoder, GaussianMLPEncoder
from cmim_jax.models.perceiver import (PerceiverImageDecoder, PerceiverImageEncoder,
                                       check_patch_size)
from cmim_jax.models.projection import ProjectionHead


def _mlp_encoder(cfg, input_shape):
  del input_shape
  return GaussianMLPEncoder(cfg.latent_dim, tuple(cfg.hidden_sizes), cfg.logvar_min, cfg.logvar_max,
                            compute_dtype(cfg))


def _mlp_decoder(cfg, input_shape, likelihood):
  return BernoulliMLPDecoder(tuple(input_shape), tuple(cfg.hidden_sizes)[::-1], compute_dtype(cfg),
                             likelihood)


def _mlp_gaussian_decoder(cfg, input_shape, likelihood):
  del likelihood  # Real-valued outputs: always Gaussian.
  return GaussianMLPDecoder(tuple(input_shape), tuple(cfg.hidden_sizes)[::-1], cfg.logvar_min,
                            cfg.logvar_max, compute_dtype(cfg))


def _conv_encoder(cfg, input_shape):
  del input_shape
  return GaussianConvEncoder(cfg.latent_dim, tuple(cfg.conv_features), cfg.conv_dense_size,
                             cfg.logvar_min, cfg.logvar_max, compute_dtype(cfg))


def _conv_decoder(cfg, input_shape, likelihood):
  return BernoulliConvDecoder(tuple(input_shape), tuple(cfg.conv_features)[::-1],
                              compute_dtype(cfg), likelihood)


def _perceiver_encoder(cfg, input_shape):
  p = cfg.perceiver
  check_patch_size(input_shape, p.patch_size)
  return PerceiverImageEncoder(cfg.latent_dim, p.patch_size, p.width, p.num_latents, p.num_heads,
                               p.encoder_layers, p.mlp_ratio, cfg.logvar_min, cfg.logvar_max,
                               compute_dtype(cfg))


def _perceiver_decoder(cfg, input_shape, likelihood):
  p = cfg.perceiver
  check_patch_size(input_shape, p.patch_size)
  return PerceiverImageDecoder(tuple(input_shape), p.patch_size, p.width, p.decoder_memory_tokens,
                               p.num_heads, p.decoder_layers, p.mlp_ratio, compute_dtype(cfg),
                               likelihood)


ENCODERS = {"mlp": _mlp_encoder, "conv": _conv_encoder, "perceiver": _perceiver_encoder}
DECODERS = {"mlp": _mlp_decoder, "mlp_gaussian": _mlp_gaussian_decoder, "conv": _conv_decoder,
            "perceiver": _perceiver_decoder}


def build_autoencoder(model_config: ml_collections.ConfigDict, input_shape: Sequence[int],
                      likelihood: str = "bernoulli") -> AutoEncoder:
  """Builds the AutoEncoder named by `model.encoder` / `model.decoder` for inputs [B, *input_shape].

  `model.decoder` may be empty, meaning "the same family as the encoder". `likelihood` names the
  pixel decoders' p(x|z) (`likelihoods.PIXEL_LIKELIHOODS`).
  """
  decoder_name = model_config.get("decoder") or model_config.encoder
  for kind, name, registry in (("encoder", model_config.encoder, ENCODERS),
                               ("decoder", decoder_name, DECODERS)):
    if name not in registry:
      raise ValueError(
          f"Unknown model.{kind} {name!r}; choose one of {sorted(registry)}.")
  return AutoEncoder(ENCODERS[model_config.encoder](model_config, input_shape),
                     DECODERS[decoder_name](model_config, input_shape, likelihood))


__all__ = [
    "AutoEncoder", "BernoulliConvDecoder", "BernoulliMLPDecoder", "DECODERS", "ENCODERS",
    "GaussianConvEncoder", "GaussianMLPDecoder", "GaussianMLPEncoder", "PerceiverImageDecoder",
    "PerceiverImageEncoder", "ProjectionHead", "build_autoencoder", "compute_dtype",
    "reparameterize",
    "sample_prior", "soft_clamp",
]
