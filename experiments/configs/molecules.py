"""cMIM pretraining on SMILES (MOSES) with a Perceiver encoder and an autoregressive decoder.

Run (CPU default, a 2-core machine; MOSES from ../shared/data/moses, else downloaded):
  python -m experiments.main --config=experiments/configs/molecules.py \
      --config.data.data_dir=../shared/data/moses --workdir=/tmp/cmim_smiles

Variants: `molecules.py:gpu` (full MOSES, a wider model, longer training), `molecules.py:quick`
(a few hundred steps, smoke tests), `molecules.py:paper` (the paper's molecule settings, Livne,
arXiv:2509.21511: a 512-d latent, here K = 8 Perceiver latents x D = 64, and τ = 1.0, on the
`gpu` model and schedule). The CPU default keeps K x D = 4 x 16 so a run fits a 2-core machine in
about ten minutes, and τ = 0.1, chosen on validation (docs/results.md section 4, issue 11): of the
CPU default pretrained at τ = 0.1 and at the paper's τ = 1.0 (one seed each), τ = 0.1 had the
lower validation RMSE of its validation-selected probe on FreeSolv and Lipophilicity and about the
same on ESOL (mean ratio 1.05 in its favour). τ = 1.0 reconstructs much better (held-out exact
match 0.386 vs 0.230; MIM 0.390), so prefer it where reconstruction matters. Any field can be overridden, e.g. `--config.loss.method=mim`,
`--config.data.corpus_path=my.smi` (any .csv/.csv.gz/.smi with `data.smiles_column`).
All of MOSES, streamed from a token file built once instead of held in memory (about 1.05 GB peak
RSS on CPU, see benchmarks/RESULTS.md):
  --config.data.pipeline=stream --config.data.max_train_molecules=0

The run writes `workdir/vocab.json` and saves `data.vocab_path` pointing at it in the checkpoint's
config. To embed a MoleculeNet set, rebuild the task from that config with `data.name` set to
"esol", "freesolv", "lipophilicity" (or "smiles_csv" with `data.csv_path`) and `data.data_dir` set
to a folder with the MoleculeNet CSVs (or empty to download them). summary.json reports held-out
reconstruction token accuracy, exact match, validity, and prior-sample validity / uniqueness.

Recorded run of the CPU default (cmim, 50k MOSES molecules, 830k parameters, 4,000 steps of 64;
2-core machine, load average 2-5, 2026-12-03): 9.4 min wall time including data loading and
evaluation, 1.67 GB peak RSS; on 500 held-out MOSES molecules, greedy reconstruction token
accuracy 0.747, exact match 0.230, RDKit validity of the reconstructions 0.532, -log p(x|z=mu)
4.29 nats; decodes of 500 prior samples: validity 0.014 (the cMIM posteriors do not cover N(0, I)).
"""

import ml_collections


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  config.data.name = "smiles"  # Pretraining; a labelled set: "esol", "bbbp", "tox21", ... (see
  # cmim_jax/data/moleculenet.py) or "smiles_csv".
  config.data.corpus = "moses"  # Used when corpus_path is empty.
  config.data.corpus_path = ""  # A .csv/.csv.gz/.smi(.gz) corpus instead of MOSES.
  config.data.smiles_column = "SMILES"  # Column of corpus_path (case-insensitive).
  config.data.data_dir = ""  # Folder with the files of data.name; "" = cache, then download.
  # Tokens per SMILES, BOS/EOS excluded (MOSES: 99.9 % have <= 49 with bracket atoms split into
  # fields). Longer corpus SMILES are skipped; longer SMILES of a labelled set are cut to it and
  # counted (positions past the corpus lengths are never trained). 0 = derive it: the
  # max_length_percentile-th percentile of the training corpus' token counts (logged either way).
  config.data.max_length = 56
  config.data.max_length_percentile = 99.9
  config.data.max_train_molecules = 50_000  # Random subset of the training corpus; 0 = all.
  config.data.num_test_molecules = 2_000  # Held out (MOSES: from its test file).
  config.data.canonicalize = False  # True: RDKit canonical SMILES (explicit [H] atoms dropped).
  config.data.keep_stereo = True  # False: canonical SMILES without stereo marks and isotopes.
  config.data.vocab_path = ""  # "" = build from the training corpus; the run fills it in.
  config.data.batch_size = 64  # Global; a multiple of the device count.
  # "device": the training set is placed on the devices and batches are gathered there (small
  # data sets); "stream": each process reads its rows of every batch from the host with a Grain
  # pipeline (large corpora; cmim_jax/data/streaming.py), with these readers and read-ahead.
  config.data.pipeline = "device"
  config.data.reader_threads = 2
  config.data.prefetch_batches = 4
  # Stream: the corpus converted once into a token file (cmim_jax/data/token_file.py) in this
  # folder; "" = token_files/ in the data cache folder.
  config.data.token_file_dir = ""
  config.data.mirrors = ()  # () = the public download locations.
  config.data.download_timeout = 60.0
  config.data.download_sha256 = ""  # A digest you trust, for files without a pinned one.
  config.data.csv_path = ""  # data.name="smiles_csv": a CSV with SMILES and labels or targets.
  config.data.csv_smiles_column = "smiles"
  config.data.target_columns = ""  # Comma-separated; "" = every non-SMILES column.
  config.data.task_type = "regression"  # Of smiles_csv: "regression", "binary", "multilabel".
  config.data.num_random_splits = 3  # Random 80/10/10 splits (seeds 0..n-1) beside the scaffold.

  config.model = ml_collections.ConfigDict()
  config.model.encoder = "perceiver_seq"
  config.model.decoder = "transformer_ar"
  config.model.num_latents = 4  # K latent vectors ...
  config.model.latent_dim = 16  # ... of D dims: z has K * D = 64 dims.
  config.model.dtype = "float32"  # Compute dtype; "bfloat16": parameters and losses stay float32.
  config.model.width = 128
  config.model.num_heads = 4
  config.model.encoder_layers = 2  # Latent self-attention blocks after the cross-attention.
  config.model.decoder_layers = 2
  config.model.mlp_ratio = 2
  config.model.logvar_min = -8.0  # Soft bounds of the encoder log-variance.
  config.model.logvar_max = 4.0

  config.loss = ml_collections.ConfigDict()
  config.loss.method = "cmim"  # cmim, cmim_sum, mim, vae, cvae.
  config.loss.temperature = 0.1  # Chosen on validation over the paper's 1.0 (module docstring).
  config.loss.contrastive_weight = 1.0
  config.loss.contrastive_anchor = "mu"  # Or "projection", "z" (see cmim_jax/objectives.py).
  config.loss.contrastive_positive = "z"  # Or "second_sample".
  # Contrastive terms: 0 = dense [B, B] logits (fine for small batches); N = an online
  # log-sum-exp over blocks of N columns, holding [B, N] at most (same values; for large batches).
  config.loss.block_size = 0
  config.loss.projection_hidden = 128  # "projection" anchor head: Dense(128), GELU, Dense(K*D).

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 4000
  config.train.learning_rate = 5e-4
  config.train.grad_clip_norm = 10.0
  config.train.log_every_steps = 100
  config.train.steps_per_dispatch = 1  # Steps per jitted call; the cadences must be multiples.

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 500
  config.checkpoint.max_to_keep = 3

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 500
  config.eval.num_molecules = 500  # Held-out molecules reconstructed greedily.
  config.eval.num_prior_samples = 500  # z ~ N(0, I) decoded for validity / uniqueness.
  config.eval.at_end = True  # False: no end-of-run evaluation (summary.json has no metrics).
  # The K-sample importance-weighted bound on log p(x) of the first N held-out molecules (K = 0:
  # off; cmim_jax/generation/likelihood.py), in nats per molecule and bits per token.
  config.eval.likelihood_samples = 10
  config.eval.likelihood_examples = 500
  config.eval.likelihood_chunk = 0  # Samples per chunk; 0 = min(K, 64).

  # True: join a multi-process job (one process per host or GPU) described by the launcher's
  # environment (cmim_jax/distributed.py; README "Multi-process runs").
  config.distributed = False
  # Compiled programs cached on disk: "" = $CMIM_JAX_COMPILATION_CACHE, else jax_cache in the data
  # cache folder (~/.cache/cmim_jax); "off" = no cache.
  config.compilation_cache_dir = ""

  if arg == "quick":
    config.data.max_train_molecules = 2_000
    config.data.num_test_molecules = 200
    config.train.num_steps = 200
    config.train.log_every_steps = 50
    config.checkpoint.every_steps = 100
    config.eval.num_molecules = 200
    config.eval.num_prior_samples = 200
  elif arg in ("gpu", "paper"):
    config.data.max_train_molecules = 0
    config.data.num_test_molecules = 10_000
    config.data.batch_size = 512
    config.model.num_latents = 8
    config.model.latent_dim = 64
    config.model.width = 512
    config.model.num_heads = 8
    config.model.encoder_layers = 4
    config.model.decoder_layers = 6
    config.model.mlp_ratio = 4
    config.train.num_steps = 200_000
    config.train.learning_rate = 3e-4
    config.checkpoint.every_steps = 10_000
    config.eval.num_molecules = 5_000
    config.eval.num_prior_samples = 5_000
    if arg == "paper":
      config.loss.temperature = 1.0  # The paper's molecule temperature (K x D = 8 x 64 = 512).
  elif arg:
    raise ValueError(f"Unknown config variant {arg!r}; use 'quick', 'gpu', 'paper' or nothing.")
  return config
