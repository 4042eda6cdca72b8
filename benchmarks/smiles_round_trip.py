"""Tokenizer round-trip rate on a SMILES test set, with the vocabulary of a training set.

  python -m benchmarks.smiles_round_trip \
      --train=../shared/data/moses/train.csv.gz --test=../shared/data/moses/test.csv.gz

Prints how many test SMILES tokenize, how many hold a token the training vocabulary lacks, and how
many satisfy decode(encode(s)) == s.
"""

from absl import app, flags

from cmim_jax.data import molecule_files
from cmim_jax.data import smiles as smiles_lib

_TRAIN = flags.DEFINE_string("train", None, "SMILES file whose tokens make the vocabulary.")
_TEST = flags.DEFINE_string("test", None, "SMILES file to round-trip.")
_COLUMN = flags.DEFINE_string("smiles_column", "SMILES", "SMILES column of CSV files.")
flags.mark_flags_as_required(["train", "test"])


def main(argv):
  del argv
  vocab = smiles_lib.build_vocabulary(
      smiles_lib.tokenize(s) for s in molecule_files.read_smiles_file(_TRAIN.value, _COLUMN.value))
  test = molecule_files.read_smiles_file(_TEST.value, _COLUMN.value)
  untokenizable = unknown = round_trips = 0
  for s in test:
    try:
      tokens = smiles_lib.tokenize(s)
    except smiles_lib.TokenizeError:
      untokenizable += 1
      continue
    _, num_unknown = vocab.token_ids(tokens)
    unknown += num_unknown > 0
    round_trips += vocab.decode(vocab.encode(s, len(tokens))) == s
  print(f"vocabulary: {len(vocab)} tokens; test SMILES: {len(test)}; untokenizable: "
        f"{untokenizable}; with unknown tokens: {unknown}; round trips: {round_trips} "
        f"({100.0 * round_trips / len(test):.3f} %)")


if __name__ == "__main__":
  app.run(main)
