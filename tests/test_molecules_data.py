"""SMILES corpora, MoleculeNet loaders (local and loopback downloads) and splits."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import threading

import ml_collections
import numpy as np
import pytest

from cmim_jax import errors
from cmim_jax.data import download as download_lib
from cmim_jax.data import molecule_files, molecule_splits, moleculenet, molecules
from tests.conftest import shared_data_path


@contextlib.contextmanager
def serve_folder(folder):
  """An HTTP server on 127.0.0.1 serving `folder`; yields its base URL."""
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/"
  finally:
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
  folder = tmp_path / "cache"
  monkeypatch.setenv(download_lib.CACHE_ENV_VAR, str(folder))
  return folder


def _data_config(**fields):
  base = dict(name="smiles", corpus="moses", corpus_path="", smiles_column="SMILES", data_dir="",
              max_train_molecules=0, num_test_molecules=2, mirrors=(), download_timeout=5.0,
              download_sha256="", csv_path="", csv_smiles_column="smiles", target_columns="",
              task_type="regression")
  base.update(fields)
  return ml_collections.ConfigDict(base)


# Reading and filtering.

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "ClCCBr"]


def test_read_smiles_file_formats(tmp_path):
  (tmp_path / "a.csv").write_text("id,smiles\n1,CCO\n2, c1ccccc1 \n3,\n")
  assert molecule_files.read_smiles_file(tmp_path / "a.csv", "SMILES") == ["CCO", "c1ccccc1"]
  with gzip.open(tmp_path / "b.csv.gz", "wt") as f:
    f.write("SMILES\n" + "\n".join(SMILES) + "\n")
  assert molecule_files.read_smiles_file(tmp_path / "b.csv.gz", "SMILES") == SMILES
  (tmp_path / "c.smi").write_text("SMILES Name\n# comment\nCCO ethanol\n\nCCN  ethylamine\n")
  assert molecule_files.read_smiles_file(tmp_path / "c.smi", "SMILES") == ["CCO", "CCN"]
  with gzip.open(tmp_path / "d.smi.gz", "wt") as f:
    f.write("CCO\nCCN\n")
  assert molecule_files.read_smiles_file(tmp_path / "d.smi.gz") == ["CCO", "CCN"]


def test_read_smiles_file_errors_name_the_fix(tmp_path):
  (tmp_path / "a.csv").write_text("id,structure\n1,CCO\n")
  with pytest.raises(ValueError, match=r"no column 'SMILES'.*\['id', 'structure'\]"):
    molecule_files.read_smiles_file(tmp_path / "a.csv", "SMILES")
  (tmp_path / "a.txt").write_text("CCO\n")
  with pytest.raises(ValueError, match=r"\.csv, \.csv\.gz, \.smi"):
    molecule_files.read_smiles_file(tmp_path / "a.txt")


def test_filter_smiles_skips_and_counts():
  smiles = ["CCO", "C1CC", "c1cccc1", "CC O", "CCCCCCCCCC", "OCC"]
  kept, tokens, counts = molecules.filter_smiles(smiles, max_tokens=6)
  assert kept == ["CCO", "OCC"]
  assert tokens == [["C", "C", "O"], ["O", "C", "C"]]
  assert (counts.read, counts.kept, counts.invalid, counts.untokenizable, counts.too_long) == (
      6, 2, 2, 1, 1)  # RDKit reads "CC O" as CC named "O"; the tokenizer rejects it.
  kept, _, counts = molecules.filter_smiles(["CC O", "CCO"], 6, check_validity=False)
  assert kept == ["CCO"] and counts.untokenizable == 1
  kept, _, _ = molecules.filter_smiles(["OCC", "C(C)O"], 6, canonical=True)
  assert kept == ["CCO", "CCO"]


def test_corpus_file_holds_out_a_test_set(tmp_path):
  smiles = [f"C{'C' * i}O" for i in range(20)]
  (tmp_path / "corpus.smi").write_text("\n".join(smiles) + "\n")
  config = _data_config(corpus_path=str(tmp_path / "corpus.smi"), num_test_molecules=5,
                        max_train_molecules=10)
  corpus = molecules.load_corpus(config, seed=0)
  assert len(corpus.test) == 5 and len(corpus.train) == 10
  assert not set(corpus.test) & set(corpus.train)
  assert set(corpus.test) | set(corpus.train) <= set(smiles)
  assert molecules.load_corpus(config, seed=0) == corpus  # Seeded.
  with pytest.raises(ValueError, match="data.num_test_molecules"):
    molecules.load_corpus(_data_config(corpus_path=config.corpus_path, num_test_molecules=20), 0)


def test_moses_from_data_dir():
  folder = shared_data_path("moses/test.csv.gz").parent
  config = _data_config(data_dir=str(folder), max_train_molecules=300, num_test_molecules=100)
  corpus = molecules.load_corpus(config, seed=0)
  assert (len(corpus.train), len(corpus.test)) == (300, 100)
  assert corpus.source == f"moses:data_dir:{folder}"
  kept, _, counts = molecules.filter_smiles(corpus.train, max_tokens=100)
  assert counts.invalid == 0 and len(kept) == 300


def test_moses_download_is_verified_against_the_public_digest(tmp_path, cache):
  """Rebuilds the public test.csv (columns SMILES,SPLIT) from the shared copy and serves it."""
  lines = gzip.decompress(shared_data_path("moses/test.csv.gz").read_bytes()).decode().split("\n")
  public = "\n".join([lines[0] + ",SPLIT"] + [f"{l},test" for l in lines[1:-1]]) + "\n"
  served = tmp_path / "served"
  served.mkdir()
  (served / "test.csv").write_text(public)
  with serve_folder(served) as url:
    path, source = molecules.moses_file("test", _data_config(mirrors=(url,)))
  assert path == cache / "moses" / "test.csv" and source.startswith("download:")
  assert hashlib.sha256(path.read_bytes()).hexdigest() == molecules.MOSES_SHA256["test"]
  assert molecule_files.read_smiles_file(path)[:1] == [lines[1]]
  (served / "train.csv").write_text("SMILES,SPLIT\nCCO,train\n")  # Not the public file.
  with serve_folder(served) as url:
    with pytest.raises(errors.DataUnavailableError, match="does not match"):
      molecules.moses_file("train", _data_config(mirrors=(url,)))
  assert not (cache / "moses" / "train.csv").exists()


# MoleculeNet.


@pytest.mark.parametrize("name,size", [("esol", 1128), ("freesolv", 642), ("lipophilicity", 4200)])
def test_moleculenet_from_data_dir(name, size):
  folder = shared_data_path("moleculenet/esol.csv").parent
  dataset = moleculenet.load_labelled_set(_data_config(name=name, data_dir=str(folder)))
  assert len(dataset.smiles) == size and dataset.values.shape == (size, 1)
  assert dataset.values.dtype == np.float32 and np.all(np.isfinite(dataset.values))
  assert all(s == s.strip() for s in dataset.smiles)


def test_esol_layouts_agree():
  """MoleculeNet's delaney-processed.csv and the two-column esol.csv give the same data."""
  folder = shared_data_path("moleculenet/delaney-processed.csv").parent
  original = molecule_files.read_labelled_csv(folder / "delaney-processed.csv", "smiles",
                                              ("measured log solubility in mols per litre",))
  two_column = molecule_files.read_labelled_csv(folder / "esol.csv")
  assert original[0] == two_column[0]
  np.testing.assert_array_equal(original[1], two_column[1])


def test_moleculenet_download_checks_sha256(tmp_path, cache):
  folder = shared_data_path("moleculenet/SAMPL.csv").parent
  with serve_folder(folder) as url:
    dataset = moleculenet.load_labelled_set(_data_config(name="freesolv", mirrors=(url,)))
    assert len(dataset.smiles) == 642 and dataset.source.startswith("download:")
    assert (cache / "moleculenet" / "SAMPL.csv").is_file()
    # No digest is pinned for Lipophilicity: refused unless the user supplies one.
    with pytest.raises(errors.DataUnavailableError, match="download_sha256"):
      moleculenet.load_labelled_set(_data_config(name="lipophilicity", mirrors=(url,)))
  served = tmp_path / "served"
  served.mkdir()
  (served / "Lipophilicity.csv").write_text("CMPD_CHEMBLID,exp,smiles\nA,1.5,CCO\nB,2.0,CCN\n")
  digest = hashlib.sha256((served / "Lipophilicity.csv").read_bytes()).hexdigest()
  (served / "delaney-processed.csv").write_text("smiles,measured log solubility in mols per "
                                                "litre\nCCO,1.0\n")
  with serve_folder(served) as url:
    with pytest.raises(errors.DataUnavailableError, match="does not match"):
      moleculenet.load_labelled_set(_data_config(name="esol", mirrors=(url,)))
    dataset = moleculenet.load_labelled_set(
        _data_config(name="lipophilicity", mirrors=(url,), download_sha256=digest))
  assert dataset.smiles == ["CCO", "CCN"]
  np.testing.assert_array_equal(dataset.values[:, 0], [1.5, 2.0])


def test_generic_csv_and_invalid_molecules(tmp_path):
  path = tmp_path / "mine.csv"
  path.write_text("smiles,y\nCCO,1\nnot_a_smiles,2\nc1ccccc1,3\nCC O,4\n")
  dataset = moleculenet.load_labelled_set(_data_config(name="smiles_csv", csv_path=str(path)))
  assert dataset.smiles == ["CCO", "c1ccccc1"]  # Unparsable and untokenizable rows are dropped.
  np.testing.assert_array_equal(dataset.values[:, 0], [1.0, 3.0])
  path.write_text("smiles,a,b\nCCO,1,2\n")
  dataset = moleculenet.load_labelled_set(_data_config(name="smiles_csv", csv_path=str(path)))
  np.testing.assert_array_equal(dataset.values, [[1.0, 2.0]])  # Every non-SMILES column.
  assert dataset.task_names == ("a", "b") and dataset.task_type == "regression"
  dataset = moleculenet.load_labelled_set(
      _data_config(name="smiles_csv", csv_path=str(path), target_columns="b"))
  assert dataset.values[0, 0] == 2.0
  path.write_text("smiles,y\nCCO,n/a\n")
  with pytest.raises(ValueError, match=r"mine.csv:2: no numeric target"):
    moleculenet.load_labelled_set(_data_config(name="smiles_csv", csv_path=str(path)))


# Splits.


def test_random_split_fractions_and_seeds():
  splits = [molecule_splits.random_split(1000, seed) for seed in range(3)]
  for split in splits:
    assert split.dtype == np.int8
    np.testing.assert_array_equal(np.bincount(split), [800, 100, 100])
  assert not np.array_equal(splits[0], splits[1])
  np.testing.assert_array_equal(molecule_splits.random_split(1000, 0), splits[0])


def test_scaffold_split_keeps_scaffolds_disjoint():
  smiles, _, _ = molecule_files.read_labelled_csv(shared_data_path("moleculenet/esol.csv"))
  split = molecule_splits.scaffold_split(smiles)
  scaffolds = [molecule_splits.murcko_scaffold(s) for s in smiles]
  sets = [{s for s, k in zip(scaffolds, split) if k == part} for part in range(3)]
  assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
  counts = np.bincount(split, minlength=3) / len(smiles)
  assert counts[0] <= 0.8 + 1e-9 and counts[0] > 0.7 and counts[2] >= 0.1
  # The largest scaffold group (acyclic molecules share "") lands in train.
  assert split[scaffolds.index("")] == molecule_splits.SPLIT_TRAIN


def test_scaffold_split_on_hand_made_groups():
  benzene_family = ["c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "c1ccccc1CC", "c1ccccc1Cl",
                    "c1ccccc1F", "c1ccccc1Br", "c1ccccc1CO"]
  smiles = benzene_family + ["C1CCCCC1O", "C1CCNCC1"]
  split = molecule_splits.scaffold_split(smiles)
  np.testing.assert_array_equal(split, [0] * 8 + [1, 2])


def test_split_annotations_keys():
  annotations = molecule_splits.split_annotations(["CCO", "c1ccccc1", "CCN", "C1CCCCC1"], 3)
  assert sorted(annotations) == ["split_random0", "split_random1", "split_random2",
                                 "split_scaffold"]
  assert all(a.shape == (4,) and a.dtype == np.int8 for a in annotations.values())
