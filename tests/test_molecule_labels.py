"""Drug-like SMILES in, classification and multi-task labels out (issue 24).

The tokenizer round-trips what the SMILES grammar allows; a model pretrained for a few steps on a
MOSES excerpt reports how much of a drug-like set it covers; binary and multi-task CSVs (missing
labels) go through the real CLIs embed -> probe -> compare with ROC-AUC and PR-AUC; one-class
splits are reported and skipped; bad label files fail with one line.
"""

import csv
import gzip
import itertools
import json
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cmim_jax import checkpointing, embedding, errors, training
from cmim_jax.data import molecule_files, moleculenet, molecules
from cmim_jax.data import smiles as smiles_lib
from cmim_jax.probes import evaluate, suite
from cmim_jax.probes import report as probe_report
from experiments.configs import molecules as molecules_config
from tests.conftest import shared_data_path
from tests.test_molecules_train import tiny_smiles_config

REPO = pathlib.Path(__file__).resolve().parents[1]

# Charges, stereo centres, a %10 ring bond, two-letter elements, explicit hydrogens, isotopes.
DRUG_LIKE = [
    "C[NH2+]CC(=O)[O-]",
    "O=[N+]([O-])c1ccc(Cl)cc1",
    "O=C(O)[C@@H]1CCCN1C(=O)[C@H](C)CS",
    "C[C@]12CC[C@H]3[C@@H](CC=C4C[C@@H](O)CC[C@@]43C)[C@@H]1CC[C@@H]2O",
    "C1CC2CC3CC4CC5CC6CC7CC8CC9CC%10CC%10C9C8C7C6C5C4C3C21",
    "[Na+].[Cl-]",
    "CC[Se]C",
    "C[Si](C)(C)C",
    "Brc1ccccc1Cl",
    "[H]OC([H])([H])[H]",
    "[2H]C([2H])([2H])O",
    "c1ccc2c(c1)[nH]c1ccccc12",
    "F/C=C/Br",
]


def run_cli(module, *args, expect_ok=True):
  completed = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=dict(os.environ),
                             capture_output=True, text=True, timeout=300, check=False)
  if expect_ok:
    assert completed.returncode == 0, completed.stderr[-3000:]
  return completed


# -- tokenizer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("smiles", DRUG_LIKE)
def test_drug_like_smiles_round_trip_to_the_same_molecule(smiles):
  tokens = smiles_lib.tokenize(smiles)
  vocab = smiles_lib.build_vocabulary([tokens])
  decoded = vocab.decode(vocab.encode(smiles, max_tokens=len(tokens)))
  assert decoded == smiles
  assert molecules.canonicalize(decoded) == molecules.canonicalize(smiles) is not None
  # Whole bracket atoms (format 1 vocabularies) round-trip too.
  atoms = smiles_lib.build_vocabulary([smiles_lib.tokenize(smiles, smiles_lib.BRACKET_ATOMS)],
                                      scheme=smiles_lib.BRACKET_ATOMS)
  assert atoms.decode(atoms.encode(smiles, max_tokens=len(tokens))) == smiles


def test_stereo_and_explicit_hydrogens_are_canonicalised_away_on_request():
  assert molecules.canonicalize("[H]OC([H])([H])[H]") == "CO"
  assert molecules.canonicalize("N[C@@H](C)C(=O)O") == "C[C@H](N)C(=O)O"  # Kept by default.
  flat = molecules.canonicalize("N[C@@H](C)C(=O)O", keep_stereo=False)
  assert flat == "CC(N)C(=O)O" and "@" not in "".join(smiles_lib.tokenize(flat))
  kept, tokens, _ = molecules.filter_smiles(["F/C=C/F", "[2H]OC"], None, keep_stereo=False)
  assert kept == ["FC=CF", "CO"] and "/" not in tokens[0]


def test_format_1_vocabulary_keeps_whole_bracket_atoms(tmp_path):
  path = tmp_path / "vocab.json"
  path.write_text(json.dumps({"format_version": 1,
                              "tokens": [*smiles_lib.SPECIAL_TOKENS, "C", "[nH]"]}))
  vocab = smiles_lib.Vocabulary.load(path)
  assert vocab.scheme == smiles_lib.BRACKET_ATOMS
  assert vocab.tokenize("C[nH]") == ["C", "[nH]"]
  assert smiles_lib.Vocabulary.load(vocab.save(tmp_path / "again.json")) == vocab


def test_coverage_counts_and_warns(caplog):
  vocab = smiles_lib.build_vocabulary([smiles_lib.tokenize("CCO")])
  tokenized = [smiles_lib.tokenize(s) for s in ("CCO", "CC[NH3+]", "CCCCCC")]
  coverage = smiles_lib.coverage(vocab, tokenized, max_tokens=5)
  assert (coverage.molecules, coverage.truncated, coverage.tokens) == (3, 2, 16)
  assert coverage.unknown_tokens == 5  # [ N H3 + ] of CC[NH3+].
  with caplog.at_level(logging.WARNING):
    line = coverage.report("set")
  assert "2 of 3 molecules (66.7%)" in line and "5 of 16 tokens (31.2%)" in line
  assert any(r.levelno == logging.WARNING and "damaged" in r.getMessage() for r in caplog.records)
  assert smiles_lib.length_percentile(tokenized, 100) == 7
  assert coverage.as_arrays()["coverage_unknown_tokens"] == 5


# -- a model pretrained on a MOSES excerpt --------------------------------------------------------


def _moses_excerpt(name, start, count):
  with gzip.open(shared_data_path(f"moses/{name}"), "rt", newline="") as f:
    reader = csv.reader(f)
    next(reader)
    return [row[0] for row in itertools.islice(reader, start, start + count)]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A tiny cMIM pretrained for 2 steps on 300 MOSES molecules, max_length derived (0) from the
  corpus's 90th length percentile."""
  folder = tmp_path_factory.mktemp("pretrained")
  corpus = folder / "moses.csv"
  corpus.write_text("SMILES\n" + "\n".join(_moses_excerpt("train.csv.gz", 0, 300)) + "\n")
  config = tiny_smiles_config(corpus)
  config.data.max_length = 0
  config.data.max_length_percentile = 90.0
  summary = training.train_and_evaluate(config, folder / "run")
  return folder / "run", summary


@pytest.mark.slow
def test_derived_max_length_is_reported_and_saved(pretrained):
  run_dir, summary = pretrained
  report = summary["input_rows"]["max_length"]
  saved = checkpointing.Checkpointer(run_dir / "checkpoints", read_only=True).restore_config()
  assert saved.data.max_length == report["max_length"] == report["percentile_90"] > 0
  assert 0.9 <= report["fraction_kept"] < 1.0
  assert summary["input_rows"]["train"]["too_long"] > 0  # The longest 10 % are skipped.


@pytest.mark.slow
def test_embedding_drug_like_smiles_reports_coverage(pretrained, tmp_path):
  run_dir, _ = pretrained
  path = tmp_path / "drugs.csv"
  path.write_text("smiles,y\n" + "".join(f"{s},{i % 2}\n" for i, s in enumerate(DRUG_LIKE)))
  trained = embedding.load_trained(run_dir, data_overrides=dict(
      name="smiles_csv", csv_path=str(path), target_columns="y", task_type="binary"))
  arrays = embedding.embed_split(trained, "all")
  vocab, limit = trained.task.vocab, trained.config.data.max_length
  tokenized = [vocab.tokenize(s) for s in DRUG_LIKE]
  unknown = sum(token not in vocab.tokens for tokens in tokenized for token in tokens)
  assert unknown > 0  # MOSES has no charges, stereo marks, Na, Se or Si.
  assert int(arrays["coverage_unknown_tokens"]) == unknown
  assert int(arrays["coverage_tokens"]) == sum(map(len, tokenized))
  assert int(arrays["coverage_truncated"]) == sum(len(t) > limit for t in tokenized) > 0
  assert int(arrays["coverage_molecules"]) == len(DRUG_LIKE)
  assert arrays["binary_labels"].shape == (len(DRUG_LIKE), 1)


# -- binary and multi-task sets through the command line ------------------------------------------


def _labelled_rows(count, seed):
  """MOSES test molecules with labels: an amide written C(=O)N (a third of them; binary), the
  amide and a sulfur with missing labels, and a rare task (two positives) whose small test parts
  hold a single class."""
  smiles = _moses_excerpt("test.csv.gz", 0, count)
  rng = np.random.default_rng(seed)
  rows = []
  for i, s in enumerate(smiles):
    missing = rng.uniform(size=2) < 0.25
    amide = int("C(=O)N" in s)
    has_s = "" if missing[1] else str(int("S" in s or "s" in s))
    rows.append((s, amide, "" if missing[0] else str(amide), has_s, int(i in (0, 1))))
  return rows


@pytest.fixture(scope="module")
def label_csvs(tmp_path_factory):
  folder = tmp_path_factory.mktemp("labelled")
  rows = _labelled_rows(120, seed=0)
  binary = folder / "binary.csv"
  binary.write_text("smiles,active\n" + "".join(f"{r[0]},{r[1]}\n" for r in rows))
  multi = folder / "multi.csv"
  multi.write_text("SMILES,amide,has_s,rare\n"
                   + "".join(f"{r[0]},{r[2]},{r[3]},{r[4]}\n" for r in rows))
  return {"binary": (binary, "smiles", "active", "binary"),
          "multi": (multi, "SMILES", "amide,has_s,rare", "multilabel")}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["binary", "multi"])
def test_labelled_csv_embed_probe_compare_from_the_command_line(pretrained, label_csvs, kind,
                                                                tmp_path):
  run_dir, _ = pretrained
  path, smiles_column, targets, task_type = label_csvs[kind]
  data_flags = [f"--data={path}", f"--smiles_column={smiles_column}",
                f"--target_columns={targets}", f"--task_type={task_type}"]
  ours, theirs = tmp_path / "cmim", tmp_path / "ecfp4"
  run_cli("experiments.embed", f"--workdir={run_dir}", *data_flags,
          f"--out_dir={ours / 'embeddings'}")
  run_cli("experiments.ecfp4_baseline", *data_flags, f"--output={theirs / 'embeddings/all.npz'}")
  probe_flags = ["--probes=logistic_regression,knn5_cosine", "--num_seeds=1", "--cv_folds=2"]
  run_cli("experiments.probe", f"--workdir={ours}", "--embeddings=mean", *probe_flags)
  run_cli("experiments.probe", f"--workdir={theirs}", "--embeddings=ecfp4", *probe_flags)

  report = json.loads((ours / "probe" / "results.json").read_text())
  assert report["info"]["kind"] == "binary"
  assert report["info"]["coverage_molecules"] == 120
  metrics = report["results"]["logistic_regression"]["mean"]
  for label in ("roc_auc@random", "pr_auc@random", "roc_auc@scaffold", "pr_auc@scaffold",
                "val_roc_auc@random"):
    assert 0.0 <= metrics[label]["mean"] <= 1.0, label
  markdown = (ours / "probe" / "results.md").read_text()
  assert "| logistic_regression | roc_auc@random |" in markdown and "Coverage" in markdown
  ecfp4_auc = json.loads((theirs / "probe" / "results.json").read_text())[
      "results"]["logistic_regression"]["ecfp4"]["roc_auc@random"]["mean"]
  if kind == "binary":
    assert ecfp4_auc > 0.75  # The amide is written in the fingerprint.
  else:  # The rare task (two positives) has a single class in some test or valid parts.
    skipped = report["info"]["skipped_tasks"]
    assert any("task 2 (rare)" in r and "holds only class 0" in r for r in skipped)
    assert "Skipped: random split" in markdown

  out = tmp_path / "compare"
  run_cli("experiments.compare", str(ours), str(theirs), f"--out={out}")
  content = json.loads((out / "compare.json").read_text())
  assert ["logistic_regression", "roc_auc@scaffold"] in content["criteria"]
  assert ["knn5_cosine", "pr_auc@random"] in content["criteria"]
  z = np.array(content["z"])
  assert np.all(np.isfinite(z)) and np.allclose(z.sum(axis=0), 0.0)
  assert sorted(np.array(content["rank"])[:, 0]) == [1.0, 2.0]


# -- probe metrics --------------------------------------------------------------------------------


def _binary_file(num=160, tasks=2, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, 6)).astype(np.float32)
  labels = (x[:, :tasks] + rng.normal(size=(num, tasks)) > 0).astype(np.float32)
  labels[rng.uniform(size=labels.shape) < 0.2] = np.nan
  split = np.where(np.arange(num) < 120, 0, 2).astype(np.int8)
  return {"mean": x, "binary_labels": labels, "split_random0": split}


def test_probe_roc_auc_equals_sklearn_on_the_same_predictions():
  arrays = _binary_file()
  report = evaluate.run_probes({"all": arrays},
                               evaluate.ProbeSettings(probes=["logistic_regression"]))
  reported = report["results"]["logistic_regression"]["mean"]["roc_auc@random"]
  chosen = report["chosen"]["logistic_regression"]["mean"][0]
  x, y = arrays["mean"], arrays["binary_labels"]
  train, test = arrays["split_random0"] == 0, arrays["split_random0"] == 2
  aucs = []
  for task in range(y.shape[1]):
    fit, scored = train & ~np.isnan(y[:, task]), test & ~np.isnan(y[:, task])
    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=chosen[f"task{task}"]["C"], max_iter=1000)).fit(x[fit], y[fit, task])
    aucs.append(roc_auc_score(y[scored, task], model.predict_proba(x[scored])[:, 1]))
  assert reported["n"] == 1
  np.testing.assert_allclose(reported["mean"], np.mean(aucs), rtol=1e-12)


def test_one_class_split_is_reported_and_skipped():
  arrays = _binary_file(tasks=2)
  y = arrays["binary_labels"]
  y[arrays["split_random0"] == 2, 1] = np.where(np.isnan(y[arrays["split_random0"] == 2, 1]),
                                                np.nan, 0.0)  # Task 1: test holds class 0 only.
  outcome = suite.fit_and_score(suite.select_probes(suite.BINARY, ["knn5_cosine"])[0], 0,
                                arrays["mean"][:120], y[:120], arrays["mean"][120:], y[120:])
  assert outcome.skipped == (f"task 1: its test part holds only class 0 "
                             f"({int((~np.isnan(y[120:, 1])).sum())} rows)",)
  assert np.isnan(outcome.predictions[:, 1]).all()
  assert outcome.metrics["roc_auc"] == roc_auc_score(
      y[120:, 0][~np.isnan(y[120:, 0])], outcome.predictions[:, 0][~np.isnan(y[120:, 0])])
  # Every task one-class: no metric, no crash, the reason in the report.
  y[:, 0] = np.where(np.isnan(y[:, 0]), np.nan, 1.0)
  report = evaluate.run_probes({"all": arrays}, evaluate.ProbeSettings(probes=["knn5_cosine"]))
  assert report["results"]["knn5_cosine"]["mean"] == {}
  assert len(report["info"]["skipped_tasks"]) == 2
  assert "- Skipped: random split, test fit" in probe_report.probe_markdown(report)


# -- registry and bad inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("name,header,row", [
    ("bbbp", "num,name,p_np,smiles", "1,a,1,CCO"),
    ("bace", "mol,CID,Class,Model,pIC50", "CCO,x,0,Train,5.0"),
    ("hiv", "smiles,activity,HIV_active", "CCO,CI,0"),
    ("clintox", "smiles,FDA_APPROVED,CT_TOX", "CCO,1,0"),
    ("tox21", ",".join(moleculenet.TOX21_TASKS) + ",mol_id,smiles", "0," * 12 + "TOX1,CCO"),
    ("sider", "smiles,Hepatobiliary disorders,Eye disorders", "CCO,1,0"),
])
def test_moleculenet_classification_sets_in_their_layouts(tmp_path, name, header, row):
  spec = moleculenet.MOLECULENET[name]
  file_name = spec.layouts[0].file_name
  text = f"{header}\n{row}\n{row.replace('CCO', 'c1ccccc1').replace(',0', ',1')}\n"
  if file_name.endswith(".gz"):
    (tmp_path / file_name).write_bytes(gzip.compress(text.encode()))
  else:
    (tmp_path / file_name).write_text(text)
  dataset = moleculenet.load_labelled_set(_config(name=name, data_dir=str(tmp_path)))
  assert dataset.task_type == spec.task_type != "regression"
  assert dataset.smiles == ["CCO", "c1ccccc1"]
  assert dataset.values.shape[1] == len(spec.layouts[0].target_columns or ["a", "b"])
  assert set(np.unique(dataset.values)) <= {0.0, 1.0}
  annotations = moleculenet.annotations(dataset)
  assert {"binary_labels", "task_names", "split_random0", "split_scaffold"} <= set(annotations)


def test_shared_classification_sets_load():
  folder = shared_data_path("moleculenet/bbbp.csv").parent
  bbbp = moleculenet.load_labelled_set(_config(name="bbbp", data_dir=str(folder)))
  tox21 = moleculenet.load_labelled_set(_config(name="tox21", data_dir=str(folder)))
  assert bbbp.values.shape[1] == 1 and not np.isnan(bbbp.values).any()
  assert tox21.values.shape[1] == 12 and np.isnan(tox21.values).any()
  assert tox21.task_names == moleculenet.TOX21_TASKS


def test_unpinned_download_needs_a_digest(tmp_path, monkeypatch):
  monkeypatch.setenv("CMIM_JAX_CACHE", str(tmp_path))
  with pytest.raises(errors.DataUnavailableError, match="download_sha256"):
    moleculenet.load_labelled_set(_config(name="tox21", mirrors=("http://127.0.0.1:9/",)))


def _config(**fields):
  data = molecules_config.get_config().data
  for key, value in fields.items():
    data[key] = value
  return data


@pytest.mark.parametrize("content,flags,message", [
    ("smiles,y\nCCO,1\n", ["--target_columns=active"],
     r"has no column 'active'; its columns are \['smiles', 'y'\]"),
    ("smiles,y\nCCO,1\nCCN,yes\n", ["--target_columns=y"],
     r"mine.csv:3: column 'y' holds 'yes'; a binary task takes 0, 1 or an empty cell"),
    ("smiles,y,z\nCCO,1,\nCCN,0,\n", ["--target_columns=y,z"],
     r"column\(s\) \['z'\] hold no label in any row"),
])
def test_bad_label_files_fail_with_one_line(tmp_path, content, flags, message):
  path = tmp_path / "mine.csv"
  path.write_text(content)
  completed = run_cli("experiments.ecfp4_baseline", f"--data={path}", "--task_type=binary",
                      *flags, f"--output={tmp_path / 'out.npz'}", expect_ok=False)
  lines = completed.stderr.strip().splitlines()
  assert completed.returncode == 2 and lines[-1].startswith("Error: "), completed.stderr[-2000:]
  assert sum(line.startswith("Error: ") for line in lines) == 1
  with pytest.raises(errors.DataError, match=message):
    molecule_files.read_labelled_csv(path, "smiles", tuple(flags[0].split("=")[1].split(",")),
                                     "binary")
  assert not (tmp_path / "out.npz").exists()
