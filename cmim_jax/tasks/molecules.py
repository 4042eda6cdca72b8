"""SMILES tasks: pretraining on a corpus (`data.name="smiles"`) and labelled molecule sets.

Both feed token sequences int32 [N, max_length + 2] (BOS, tokens, EOS, PAD = 0) to the Perceiver /
autoregressive-Transformer auto-encoder of `cmim_jax.models.sequence`. The vocabulary is built
from the pretraining corpus and written to `workdir/vocab.json`; the run's saved config points at
it through `data.vocab_path`, so a task rebuilt from a checkpoint's config (for instance with
`data.name` swapped to "esol") tokenises with the same ids. Tokens the vocabulary lacks become
UNK, and are counted and logged.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import pathlib

import jax
import ml_collections
from jax.experimental import multihost_utils
import numpy as np
from absl import logging
from jax.sharding import Mesh

from cmim_jax import sharding as sharding_lib
from cmim_jax.data import (download, molecule_files, moleculenet, molecules, streaming,
                           token_file)
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.embedding import compute as embedding_compute
from cmim_jax.errors import ConfigError, DataError
from cmim_jax.models import gaussian, sequence
from cmim_jax.tasks.base import Task

VOCAB_FILE = "vocab.json"


def _example_input(seq_length: int) -> np.ndarray:
  """Two sequences BOS, EOS, PAD... [2, seq_length] for parameter initialisation."""
  example = np.full((2, seq_length), smiles_lib.PAD_ID, np.int32)
  example[:, :2] = (smiles_lib.BOS_ID, smiles_lib.EOS_ID)
  return example


def _jit_greedy_decode(model, mesh: Mesh, length: int):
  return jax.jit(functools.partial(sequence.greedy_decode, model, length=length),
                 in_shardings=(sharding_lib.replicated(mesh), sharding_lib.batch_sharded(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def reconstruction_metrics(decoded: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """Token accuracy (over the targets' non-padding positions after BOS, EOS included) and
  exact-match rate of greedy reconstructions. Both int [N, L]."""
  scored = targets[:, 1:] != smiles_lib.PAD_ID
  correct = (decoded[:, 1:] == targets[:, 1:]) & scored
  return {
      "reconstruction_token_accuracy": float(correct.sum() / scored.sum()),
      "reconstruction_exact_match": float(np.mean(np.all(correct == scored, axis=1))),
  }


def validity_and_uniqueness(smiles: list[str]) -> tuple[float, float]:
  """Fraction of strings RDKit parses, and fraction of distinct canonical molecules among those."""
  canonical = [molecules.canonicalize(s) if s else None for s in smiles]
  valid = [c for c in canonical if c is not None]
  validity = len(valid) / max(len(smiles), 1)
  return validity, (len(set(valid)) / len(valid) if valid else 0.0)


class _SmilesTaskBase(Task):
  """What both SMILES tasks share: vocabulary, model, tokenisation, generation metrics."""

  def __init__(self, config: ml_collections.ConfigDict, vocab: smiles_lib.Vocabulary):
    self.vocab = vocab
    self.max_tokens = config.data.max_length
    self.seq_length = self.max_tokens + 2
    self._eval_config = config.eval
    self._seed = config.seed
    self.example_input = _example_input(self.seq_length)

  def build_model(self, model_config):
    return sequence.build_sequence_autoencoder(model_config, len(self.vocab), self.seq_length)

  def preprocess(self, batch, key):
    del key  # Token sequences are used as they are.
    return batch["tokens"]

  def likelihood_dimensions(self, inputs: np.ndarray) -> np.ndarray:
    """The scored tokens of each sequence (those after BOS, EOS included): bits per token."""
    return np.sum(np.asarray(inputs)[:, 1:] != smiles_lib.PAD_ID, axis=1)

  def generation_metrics(self, model, params, mesh: Mesh, tokens: np.ndarray) -> dict[str, float]:
    """Greedy reconstructions of `tokens` from z = mu and decodes of prior samples z ~ N(0, I)."""
    batch_size = self._eval_config.batch_size
    decode = _jit_greedy_decode(model, mesh, self.seq_length)
    embedded = embedding_compute.embed_inputs(model, params, tokens, mesh, batch_size)
    decoded = embedding_compute.run_batched(decode, mesh, params,
                                            embedded["mean"].astype(np.float32), batch_size)
    validity, _ = validity_and_uniqueness(smiles_lib.decode_batch(self.vocab, decoded))
    prior_z = np.asarray(gaussian.sample_prior(
        jax.random.key(self._seed + 1), self._eval_config.num_prior_samples,
        embedded["mean"].shape[1]))
    sampled = smiles_lib.decode_batch(
        self.vocab, embedding_compute.run_batched(decode, mesh, params, prior_z, batch_size))
    prior_validity, prior_uniqueness = validity_and_uniqueness(sampled)
    return {
        "reconstruction_nll": float(np.mean(embedded["reconstruction_nll"])),
        **reconstruction_metrics(decoded, tokens),
        "reconstruction_validity": validity,
        "prior_validity": prior_validity,
        "prior_uniqueness": prior_uniqueness,
    }


class SmilesTask(_SmilesTaskBase):
  """Pretraining on a SMILES corpus; evaluation on its held-out molecules."""

  def __init__(self, config: ml_collections.ConfigDict):
    data = config.data
    vocab = smiles_lib.Vocabulary.load(data.vocab_path) if data.vocab_path else None
    scheme = vocab.scheme if vocab else smiles_lib.DEFAULT_SCHEME
    corpus = molecules.load_corpus(data, config.seed)
    standardize = dict(canonical=data.canonicalize, keep_stereo=data.get("keep_stereo", True),
                       scheme=scheme)
    train, train_tokens, counts = molecules.filter_smiles(corpus.train, None, **standardize)
    if not train_tokens:
      raise DataError(f"No usable SMILES in the training corpus of {corpus.source} (see the skip "
                      "counts in the log); check data.smiles_column.")
    config = self._with_max_length(config, train_tokens)
    train, train_tokens, counts = molecules.drop_longer(train, train_tokens, counts,
                                                        config.data.max_length)
    counts.log("Training corpus")
    test, test_tokens, test_counts = molecules.filter_smiles(
        corpus.test, config.data.max_length, **standardize)
    test_counts.log("Held-out corpus")
    self.input_rows = {"file_rows_skipped": corpus.skipped_rows,
                       "train": dataclasses.asdict(counts), "test": dataclasses.asdict(test_counts),
                       "max_length": self.max_length_report}
    if not train or not test:
      raise DataError(f"No usable SMILES left in the {'training' if not train else 'held-out'} "
                      f"corpus of {corpus.source} (see the skip counts in the log); check "
                      "data.smiles_column and data.max_length.")
    if vocab is not None:
      logging.info("Vocabulary of %d tokens from %s.", len(vocab), data.vocab_path)
    else:
      vocab = smiles_lib.build_vocabulary(train_tokens, scheme=scheme)
      logging.info("Vocabulary of %d tokens (scheme %s) built from %d training SMILES.",
                   len(vocab), scheme, len(train))
    super().__init__(config, vocab)
    self.source = corpus.source
    self.train_smiles, self.test_smiles = train, test
    train_ids, train_unknown = smiles_lib.encode_batch(vocab, train_tokens, self.max_tokens)
    self.test_tokens, test_unknown = smiles_lib.encode_batch(vocab, test_tokens, self.max_tokens)
    if train_unknown or test_unknown:
      logging.warning("Tokens outside the vocabulary, mapped to %s: %d in training, %d held out.",
                      smiles_lib.UNK, train_unknown, test_unknown)
    self.train_arrays = {"tokens": train_ids}

  def _with_max_length(self, config: ml_collections.ConfigDict,
                       train_tokens: list[list[str]]) -> ml_collections.ConfigDict:
    """`config` with `data.max_length` set (a copy) when it is 0: the
    `data.max_length_percentile`-th percentile of the training corpus' token counts. Either way
    the percentile and the share of the corpus the limit keeps are logged and kept for the
    summary (`self.max_length_report`)."""
    percentile = config.data.get("max_length_percentile", 99.9)
    derived = smiles_lib.length_percentile(train_tokens, percentile)
    if not config.data.max_length:
      config = copy.deepcopy(config)
      config.data.max_length = derived
    max_length = config.data.max_length
    kept = float(np.mean([len(t) <= max_length for t in train_tokens]))
    self.max_length_report = {"max_length": max_length, f"percentile_{percentile:g}": derived,
                              "fraction_kept": kept}
    logging.info("data.max_length=%d keeps %.2f%% of the training SMILES whole; their %g-th "
                 "length percentile is %d tokens.", max_length, 100 * kept, percentile, derived)
    return config

  def save_assets(self, workdir: pathlib.Path,
                  config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Writes `workdir/vocab.json` (or checks the one a previous run wrote) and returns a copy of
    `config` whose `data.vocab_path` points at it."""
    path = pathlib.Path(workdir).absolute() / VOCAB_FILE
    if path.is_file():
      if smiles_lib.Vocabulary.load(path) != self.vocab:
        raise ConfigError(
            f"{path} holds a different vocabulary than this run's corpus gives; resume with "
            f"--config.data.vocab_path={path} or use a new workdir.")
    elif jax.process_index() == 0:
      self.vocab.save(path)
    config = copy.deepcopy(config)
    config.data.vocab_path = str(path)
    config.data.max_length = self.max_tokens  # Fixes a derived one (data.max_length=0).
    return config

  embedding_splits = ("train", "test")

  def embedding_inputs(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Token sequences int32 [N, L] of `split`; a pretraining corpus has no annotations."""
    if split not in self.embedding_splits:
      raise ConfigError(f"Unknown split {split!r}; choose from {self.embedding_splits}.")
    return (self.train_arrays["tokens"] if split == "train" else self.test_tokens), {}

  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """On up to `eval.num_molecules` held-out molecules: -log p(x|z=mu) (nats/molecule), greedy
    reconstruction token accuracy, exact-match rate and RDKit validity; and validity and
    uniqueness of greedy decodes of `eval.num_prior_samples` prior samples."""
    tokens = self.test_tokens[:self._eval_config.num_molecules]
    return {"num_test_molecules": len(tokens),
            **self.generation_metrics(model, params, mesh, tokens)}


class StreamedSmilesTask(SmilesTask):
  """`SmilesTask` over a corpus too large for memory (`data.pipeline="stream"`).

  The training file is converted once, streaming, into a token file
  (`cmim_jax.data.token_file`) in `data.token_file_dir` (default: token_files/ in the data cache),
  which training reads a batch's rows at a time; nothing holds the corpus. Held out: MOSES's test
  file (`data.num_test_molecules` random ones of it, read as in `SmilesTask`); for
  `data.corpus_path`, its first `data.num_test_molecules` usable SMILES, training on the rest.
  `data.max_train_molecules > 0` trains on the first that many training rows (not a random subset).
  """

  def __init__(self, config: ml_collections.ConfigDict):  # pylint: disable=super-init-not-called
    data = config.data
    if not data.max_length:
      raise ConfigError("data.max_length=0 (derive it from the corpus) needs "
                        "data.pipeline='device'; with 'stream' set it, e.g. to the percentile the "
                        "log of a device-pipeline run on a sample of the corpus reports.")
    vocab = smiles_lib.Vocabulary.load(data.vocab_path) if data.vocab_path else None
    if data.get("corpus_path"):
      path, source, test = pathlib.Path(data.corpus_path), f"file:{data.corpus_path}", None
    else:
      path, source = molecules.moses_file("train", data)
      source = f"moses:{source}"
      test_path, _ = molecules.moses_file("test", data)
      test = molecules.subsample(molecule_files.read_smiles_file(test_path),
                                 data.num_test_molecules, np.random.default_rng(config.seed))
    tokens = self._token_file(path, data, vocab)
    vocab, self.token_file_info = tokens.vocab, tokens.info
    logging.info("Token file %s: %s", tokens.folder, tokens.info)
    _SmilesTaskBase.__init__(self, config, vocab)
    self.source = source
    num_train = len(tokens.source)
    if test is None:
      num_test = data.num_test_molecules
      if num_test >= num_train:
        raise DataError(f"{path} has {num_train} usable SMILES, not more than "
                        f"data.num_test_molecules={num_test}; lower it or use a larger corpus.")
      self.test_tokens = np.asarray(tokens.tokens(0, num_test))
      test_rows = {"read": num_test, "kept": num_test}
      start = num_test
    else:
      _, test_tokens, test_counts = molecules.filter_smiles(
          test, data.max_length, canonical=data.canonicalize,
          keep_stereo=data.get("keep_stereo", True), scheme=vocab.scheme)
      self.test_tokens, _ = smiles_lib.encode_batch(vocab, test_tokens, data.max_length)
      test_rows, start = dataclasses.asdict(test_counts), 0
    stop = start + data.max_train_molecules if data.max_train_molecules > 0 else None
    self._train_source = tokens.source.rows(start, stop)
    self.train_arrays = {"tokens": tokens.tokens(start, stop)}  # A memory map, for embedding.
    self.input_rows = {"train": tokens.info["rows"], "test": test_rows,
                       "train_rows_used": len(self._train_source)}

  @staticmethod
  def _token_file(path: pathlib.Path, data: ml_collections.ConfigDict,
                  vocab: smiles_lib.Vocabulary | None) -> token_file.TokenFile:
    """The token file of `path`, built by process 0 when absent (the others wait for it)."""
    column = data.smiles_column if data.get("corpus_path") else "SMILES"
    folder = pathlib.Path(data.get("token_file_dir") or download.cache_dir() / "token_files")
    keep_stereo = data.get("keep_stereo", True)
    folder = folder / token_file.folder_name(path, column, data.max_length, data.canonicalize,
                                             vocab, keep_stereo)
    if not folder.is_dir() and jax.process_index() == 0:
      logging.info("Converting %s into the token file %s (once).", path, folder)
      token_file.build_token_file(molecule_files.iter_smiles_file(path, column), folder,
                                  data.max_length, canonical=data.canonicalize,
                                  keep_stereo=keep_stereo, vocab=vocab, source=str(path))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"token file {folder.name}")
    return token_file.TokenFile(folder)

  def train_source(self) -> streaming.RowSource:
    return self._train_source


class MoleculeNetTask(_SmilesTaskBase):
  """A labelled set (a MoleculeNet set or any CSV, regression, binary or multi-label; see
  `cmim_jax.data.moleculenet`) for embedding and probing, tokenised with the pretraining run's
  vocabulary (`data.vocab_path`) and its scheme, after the run's `data.canonicalize` /
  `data.keep_stereo`.

  Molecules RDKit cannot parse are dropped (counted in the log); SMILES longer than
  `data.max_length` tokens are cut to it, so every parsable molecule of the set keeps its row. The
  coverage (molecules cut, tokens unknown to the vocabulary) is logged, with a warning above 1 %,
  and stored in the embedding files as "coverage_*" counts.
  """

  embedding_splits = ("all",)

  def __init__(self, config: ml_collections.ConfigDict):
    if not config.data.get("vocab_path"):
      raise ConfigError(
          f"data.name={config.data.name!r} needs data.vocab_path: the vocab.json written by the "
          "pretraining run (its saved config sets it; or pass --config.data.vocab_path=FILE).")
    super().__init__(config, smiles_lib.Vocabulary.load(config.data.vocab_path))
    dataset = moleculenet.load_labelled_set(config.data)
    self.source = dataset.source
    self.smiles = dataset.smiles
    keep_stereo = config.data.get("keep_stereo", True)
    written = [molecules.canonicalize(s, keep_stereo)
               if config.data.get("canonicalize") or not keep_stereo else s
               for s in dataset.smiles]
    tokenized = [self.vocab.tokenize(s) for s in written]
    self.coverage = smiles_lib.coverage(self.vocab, tokenized, self.max_tokens)
    self.coverage.report(f"{config.data.name} under the vocabulary of {config.data.vocab_path}")
    tokens, _ = smiles_lib.encode_batch(
        self.vocab, [t[:self.max_tokens] for t in tokenized], self.max_tokens)
    self.train_arrays = {"tokens": tokens}
    self._annotations = {**moleculenet.annotations(dataset,
                                                   config.data.get("num_random_splits", 3)),
                         **self.coverage.as_arrays()}

  def embedding_inputs(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tokens int32 [N, L]; {"targets" or "binary_labels": float32 [N, T], "task_names" [T],
    "split_random<k>", "split_scaffold": int8 [N] (0/1/2 = train/valid/test), "coverage_*":
    int64 counts}."""
    if split not in self.embedding_splits:
      raise ConfigError(f"Unknown split {split!r}; choose from {self.embedding_splits}.")
    return self.train_arrays["tokens"], dict(self._annotations)

  def evaluate(self, model, params, mesh: Mesh) -> dict[str, float]:
    """Reconstruction metrics of every molecule of the set (see `SmilesTask.evaluate`)."""
    return self.generation_metrics(model, params, mesh, self.train_arrays["tokens"])


def build_smiles_task(config: ml_collections.ConfigDict) -> SmilesTask:
  if config.data.get("pipeline", "device") == "stream":
    return StreamedSmilesTask(config)
  return SmilesTask(config)


def build_labelled_task(config: ml_collections.ConfigDict) -> MoleculeNetTask:
  return MoleculeNetTask(config)


MOLECULE_TASK_BUILDERS = {
    "smiles": build_smiles_task,
    **{name: build_labelled_task for name in moleculenet.LABELLED_DATASETS}}
