"""The regex SMILES tokenizer and its vocabulary."""

import csv
import gzip
import itertools
import json

import numpy as np
import pytest

from cmim_jax.data import smiles as smiles_lib
from tests.conftest import shared_data_path

TRICKY = [
    "C%12CC%12",  # Two-digit ring closures.
    "C1CC2CC%10CC%11CC1C2%10%11",
    "[13CH3+]",  # Isotope, H count, charge.
    "[NH4+].[Cl-]",  # Disconnected ions.
    "[O-][N+](=O)c1ccccc1",
    "c1cc[nH]c1",  # Aromatic bracket atom.
    "C[C@@H](N)C(=O)O",  # Tetrahedral stereo.
    "N[C@H](C)C(=O)O",
    "F/C=C/F",  # Double-bond stereo.
    "F/C=C\\Cl",
    "ClCCBr",  # Two-letter organic-subset atoms.
    "BrC(Cl)(Cl)Cl",
    "[2H]C([2H])([2H])O",
    "B(O)O",  # Boron, not bromine.
    "C#N",
    "[Se]1C=CC=C1",
    "*C(=O)O",  # Wildcard atom.
    "[Fe+2]",
]


@pytest.mark.parametrize("smiles", TRICKY)
def test_tokens_cover_tricky_smiles_and_round_trip(smiles):
  tokens = smiles_lib.tokenize(smiles)
  assert "".join(tokens) == smiles
  vocab = smiles_lib.build_vocabulary([tokens])
  assert vocab.decode(vocab.encode(smiles, max_tokens=len(tokens))) == smiles


def test_tokenize_splits_multi_character_tokens():
  assert smiles_lib.tokenize("C[C@@H](Cl)Br") == ["C", "[", "C", "@@", "H", "]", "(", "Cl", ")",
                                                   "Br"]
  assert smiles_lib.tokenize("C[C@@H](Cl)Br", smiles_lib.BRACKET_ATOMS) == [
      "C", "[C@@H]", "(", "Cl", ")", "Br"]
  assert smiles_lib.tokenize("[13CH3+]") == ["[", "13", "C", "H3", "+", "]"]
  assert smiles_lib.tokenize("[Na+].[Cl-]") == ["[", "Na", "+", "]", ".", "[", "Cl", "-", "]"]
  assert smiles_lib.tokenize("[CH2:12][Fe+2]") == ["[", "C", "H2", ":12", "]", "[", "Fe", "+2", "]"]
  assert smiles_lib.tokenize("C%12CC1%12") == ["C", "%12", "C", "C", "1", "%12"]
  assert smiles_lib.tokenize("F/C=C\\F") == ["F", "/", "C", "=", "C", "\\", "F"]
  assert smiles_lib.tokenize("Bc1ccccc1") == ["B", "c", "1", "c", "c", "c", "c", "c", "1"]


@pytest.mark.parametrize("text,position", [("CC O", 2), ("CCX", 2), ("C[NH", 1)])
def test_tokenize_rejects_non_smiles_naming_the_position(text, position):
  with pytest.raises(smiles_lib.TokenizeError, match=f"position {position}"):
    smiles_lib.tokenize(text)


def test_vocabulary_orders_by_frequency_after_the_special_tokens():
  vocab = smiles_lib.build_vocabulary([["C", "C", "O"], ["C", "N", "O"], ["Cl"]])
  assert vocab.tokens[:5] == smiles_lib.SPECIAL_TOKENS
  assert vocab.tokens[5:] == ("C", "O", "Cl", "N")  # 3x, 2x, then ties in lexical order.
  assert smiles_lib.build_vocabulary([["Cl"]], min_count=2).tokens == smiles_lib.SPECIAL_TOKENS


def test_encode_layout_padding_and_limits():
  vocab = smiles_lib.build_vocabulary([["C", "O"]])
  ids = vocab.encode("CO", max_tokens=4)
  c, o = vocab.tokens.index("C"), vocab.tokens.index("O")
  np.testing.assert_array_equal(
      ids, [smiles_lib.BOS_ID, c, o, smiles_lib.EOS_ID, smiles_lib.PAD_ID, smiles_lib.PAD_ID])
  assert ids.dtype == np.int32
  with pytest.raises(ValueError, match="more than max_tokens=2"):
    vocab.encode("COC", max_tokens=2)


def test_unknown_tokens_map_to_unk_and_are_counted():
  vocab = smiles_lib.build_vocabulary([["C", "O"]])
  ids, unknown = smiles_lib.encode_batch(vocab, [["C", "Cl", "O"], ["N"]], max_tokens=3)
  assert unknown == 2
  assert ids[0, 2] == smiles_lib.UNK_ID and ids[1, 1] == smiles_lib.UNK_ID
  assert smiles_lib.decode_batch(vocab, ids) == ["C<unk>O", "<unk>"]


def test_vocabulary_json_round_trip(tmp_path):
  vocab = smiles_lib.build_vocabulary([smiles_lib.tokenize(s) for s in TRICKY])
  path = vocab.save(tmp_path / "sub" / "vocab.json")
  assert smiles_lib.Vocabulary.load(path) == vocab
  assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # No temporary file left.
  (tmp_path / "bad.json").write_text(json.dumps({"tokens": ["C"]}))
  with pytest.raises(ValueError, match="Not a cmim_jax SMILES vocabulary"):
    smiles_lib.Vocabulary.load(tmp_path / "bad.json")
  with pytest.raises(FileNotFoundError, match="data.vocab_path"):
    smiles_lib.Vocabulary.load(tmp_path / "missing.json")


def test_vocabulary_rejects_a_token_list_without_the_special_tokens():
  with pytest.raises(ValueError, match="must start with"):
    smiles_lib.Vocabulary(("C", "O"))


def _read_moses(name, limit):
  with gzip.open(shared_data_path(f"moses/{name}"), "rt", newline="") as f:
    reader = csv.reader(f)
    assert next(reader) == ["SMILES"]
    return [row[0] for row in itertools.islice(reader, limit)]


def test_round_trip_on_moses_test_molecules():
  train = _read_moses("train.csv.gz", 20_000)
  test = _read_moses("test.csv.gz", 3_000)
  vocab = smiles_lib.build_vocabulary(smiles_lib.tokenize(s) for s in train)
  round_trips = 0
  for s in test:
    decoded = vocab.decode(vocab.encode(s, max_tokens=100))
    if smiles_lib.UNK in decoded:
      continue  # A token the 20k training molecules lack: not a tokenizer failure.
    assert decoded == s
    round_trips += 1
  assert round_trips >= 0.99 * len(test)
