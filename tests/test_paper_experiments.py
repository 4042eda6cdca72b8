"""The smoke preset of every paper experiment runs end to end and writes outputs that parse.

Each script runs as a subprocess from the repo root on one CPU device (the scripts orchestrate;
sharding is tested elsewhere, and 8 simulated devices' collectives can time out on a loaded
machine) on synthetic data written here, so no test needs ../shared/data or the network.
"""

import itertools
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from cmim_jax.data.idx import read_idx
from tests.conftest import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def run_script(name: str, *args: str) -> None:
  """Runs `python -m experiments.paper.NAME --preset=smoke ARGS` on one device."""
  completed = subprocess.run(
      [sys.executable, "-m", f"experiments.paper.{name}", "--preset=smoke", *args], cwd=REPO,
      env=dict(os.environ, XLA_FLAGS=xla_flags(1)), capture_output=True, text=True, timeout=600,
      check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.mark.slow
def test_toy2d_smoke_writes_statistics_and_figures_and_resumes(tmp_path):
  figures = tmp_path / "figures"
  run_script("toy2d", f"--out={tmp_path}", f"--figures={figures}")
  out = tmp_path / "toy2d_smoke"
  content = json.loads((out / "results.json").read_text())
  assert set(content["results"]) == {"mim", "cmim", "vae"}
  for per_seed in content["results"].values():
    assert 0 <= per_seed[0]["angle_mean_resultant_length"] <= 1
    assert 0 <= per_seed[0]["angle_ks_p"] <= 1 and per_seed[0]["radius_std"] > 0
  for kind in ("points", "angles", "radii"):
    assert (figures / f"toy2d_{kind}.png").read_bytes()[:8] == PNG
  assert "| cmim | 1 |" in (out / "report.md").read_text()

  summary = out / "runs" / "cmim_seed0" / "summary.json"
  before = summary.stat().st_mtime_ns
  run_script("toy2d", f"--out={tmp_path}")  # Everything is done: nothing is retrained.
  assert summary.stat().st_mtime_ns == before


@pytest.mark.slow
def test_batch_size_smoke_fits_z_and_accuracy_against_log_batch_at_fixed_steps(
    tmp_path, synthetic_mnist_dir):
  run_script("batch_size", f"--out={tmp_path}", f"--data_dir={synthetic_mnist_dir}")
  out = tmp_path / "batch_size_fixed_steps_smoke"
  content = json.loads((out / "results.json").read_text())
  runs = content["runs"]
  assert {(r["method"], r["batch_size"]) for r in runs} == set(
      itertools.product(("cmim", "infonce"), (2, 10, 50)))
  assert {r["steps"] for r in runs} == {5}  # Fixed steps: every B takes the same 5 steps.
  assert sum(r["z"] for r in runs) == pytest.approx(0.0, abs=1e-9)  # Centred over all runs.
  assert set(content["fits"]) == {"z", "knn5_cosine accuracy", "logistic_regression accuracy"}
  for metric, by_method in content["fits"].items():
    for fit in by_method.values():
      assert fit["num_points"] == 3 and fit["slope_ci_low"] <= fit["slope"] <= fit["slope_ci_high"]
      assert 0 <= fit["p_value"] <= 1
    difference = content["slope_differences"][metric]["cmim - infonce"]
    assert difference["difference"] == pytest.approx(
        by_method["cmim"]["slope"] - by_method["infonce"]["slope"])
  assert (out / "batch_size_fixed_steps_z.png").read_bytes()[:8] == PNG
  report = (out / "report.md").read_text()
  assert "fixed steps" in report and "cmim - infonce (difference of slopes)" in report


def test_batch_size_protocols_set_the_steps():
  from experiments.paper import batch_size  # pylint: disable=g-import-not-at-top
  fixed_examples = batch_size.preset_for("cpu", "fixed_examples")
  fixed_steps = batch_size.preset_for("cpu", "fixed_steps")
  assert fixed_steps["batch_sizes"] == (2, 5, 10, 50, 100, 200, 500, 1000)
  assert set(fixed_steps["methods"]) == {"cmim", "cmim_sum", "infonce", "mim"}
  for b in (2, 1000):
    assert batch_size.run_config("cmim", b, 0, fixed_steps, "").train.num_steps == 200
    assert batch_size.run_config("cmim", b, 0, fixed_examples, "").train.num_steps == 10_000 // b
  with pytest.raises(ValueError, match="protocol must be one of"):
    batch_size.preset_for("cpu", "fixed_epochs")


@pytest.mark.slow
def test_mnist_table_smoke_ranks_methods_and_embeddings(tmp_path, synthetic_mnist_dir):
  # The synthetic digits stand in for Fashion-MNIST too: its table gets the same controls.
  run_script("mnist_table", f"--out={tmp_path}", f"--data_dir={synthetic_mnist_dir}",
             f"--fashion_data_dir={synthetic_mnist_dir}")
  out = tmp_path / "mnist_table_smoke"
  results = json.loads((out / "results.json").read_text())
  for data_name in ("mnist", "fashion_mnist"):
    table = results["tables"][data_name]
    assert set(table["cmim"]) == {"mean", "informative", "reconstruction_loss"}
    assert set(table["infonce"]) == {"mean"}  # No decoder: no informative embedding, no loss.
    assert table["cmim"]["reconstruction_loss"][0] > 0
    for cells in (table["cmim"]["mean"], table["cmim"]["informative"], table["infonce"]["mean"]):
      assert 0 <= cells["knn5_cosine/accuracy"][0] <= 1 and math.isfinite(cells["mean_z"][0])
  mnist_part, fashion_part = (out / "report.md").read_text().split("## fashion_mnist")
  for part in (mnist_part, fashion_part):
    assert "| infonce | mean |" in part and "### Baselines and controls" in part
    assert "| raw |" in part and "| pca |" in part and "| random_expansion | cmim's" in part


RINGS = ("c1ccccc1", "c1ccncc1", "C1CCCCC1", "C1CCNCC1", "c1ccoc1", "c1ccsc1", "C1CC1", "C1CCOC1",
         "c1cnccn1", "C1CCC1")


@pytest.fixture
def molecule_files(tmp_path):
  """A SMILES corpus and the three two-column MoleculeNet files (ten ring scaffolds)."""
  smiles = [f"{'C' * a}{ring}{'C' * b}"
            for a, b, ring in itertools.product(range(1, 4), range(3), RINGS)]
  (tmp_path / "corpus.smi").write_text("SMILES\n" + "\n".join(smiles) + "\n")
  for file_name, column in (("esol.csv", "logSolubility"), ("freesolv.csv", "freesolv"),
                            ("lipo.csv", "lipo")):
    (tmp_path / file_name).write_text(
        f"smiles,{column}\n" + "\n".join(f"{s},{len(s) / 3:.3f}" for s in smiles) + "\n")
  return tmp_path


@pytest.mark.slow
def test_molecules_table_smoke_pretrains_embeds_and_probes(tmp_path, molecule_files):
  run_script("molecules_table", f"--out={tmp_path / 'out'}", f"--data_dir={molecule_files}",
             f"--corpus_path={molecule_files / 'corpus.smi'}")
  out = tmp_path / "out" / "molecules_table_smoke"
  content = json.loads((out / "results.json").read_text())
  assert set(content["results"]) == {"esol", "freesolv", "lipophilicity"}
  for by_run in content["results"].values():
    assert set(by_run) == {"mim", "cmim", "ecfp4"}
    assert set(by_run["cmim"]["ridge"]) == {"mean", "informative", "random_expansion"}
    assert set(by_run["cmim"]["mlp"]) == {"mean"}  # The other capacity control.
    assert set(by_run["ecfp4"]["ridge"]) == {"raw", "pca"}  # Probed once per data set.
    random = by_run["ecfp4"]["ridge"]["raw"]["rmse@random"]
    assert random["n"] == 3 and random["mean"] > 0  # Three random splits pooled.
    assert by_run["ecfp4"]["ridge"]["raw"]["val_rmse@random"]["n"] == 3
    assert by_run["mim"]["ridge"]["informative"]["val_rmse@scaffold"]["mean"] > 0
  assert content["pca_dims"] == {name: 8 for name in content["results"]}  # K x D = 2 x 4.
  assert set(content["pretrain_summaries"]) == {"mim", "cmim"}
  assert content["models"]["cmim"]["method"] == "cmim"
  assert 0 <= content["models"]["mim"]["reconstruction_token_accuracy"] <= 1
  for family in ("random", "scaffold"):
    assert set(content["selected_on_validation"][family]["esol"]) == {
        "mim", "cmim", "mim capacity controls", "cmim capacity controls", "ECFP4 baselines"}
  report = (out / "report.md").read_text()
  assert "| esol | ECFP4 | ridge |" in report and "| esol | PCA of ECFP4 (8) | ridge |" in report
  assert "The selection used the validation rows only" in report


def _row(data_set, source, features, val, test):
  return {"data_set": data_set, "source": source, "features": features, "probe": "ridge",
          "metrics": {"val_rmse@random": {"mean": val, "std": 0.0, "n": 3},
                      "rmse@random": {"mean": test, "std": 0.0, "n": 3}}}


def test_molecules_selection_uses_validation_rmse_never_test_rmse():
  from experiments.paper import molecules_table  # pylint: disable=g-import-not-at-top
  rows = [_row("esol", "cmim", "cmim mean", val=0.9, test=0.5),  # Best on test only.
          _row("esol", "cmim", "cmim informative", val=0.7, test=0.8),  # Best on validation.
          _row("esol", "ECFP4 baselines", "ECFP4", val=1.0, test=1.1),
          _row("freesolv", "cmim", "cmim mean", val=2.0, test=3.0)]
  selected = molecules_table.select_on_validation(rows, "random")
  assert selected["esol"]["cmim"]["features"] == "cmim informative"
  assert selected["esol"]["ECFP4 baselines"]["features"] == "ECFP4"
  assert selected["freesolv"]["cmim"]["features"] == "cmim mean"
  assert molecules_table.select_on_validation(rows, "scaffold") == {}  # No val_rmse@scaffold.


def test_molecules_workdirs_flag_takes_any_number_of_named_models():
  from experiments.paper import molecules_table  # pylint: disable=g-import-not-at-top
  parsed = molecules_table.parse_workdirs(["mim=/r/mim", "cmim=/r/cmim", "cmim_t1=/r/t1"])
  assert list(parsed) == ["mim", "cmim", "cmim_t1"]
  assert str(parsed["cmim_t1"]) == "/r/t1"
  for bad in (["mim"], ["mim=/a", "mim=/b"], ["ecfp4=/a"]):
    with pytest.raises(ValueError, match="name=workdir"):
      molecules_table.parse_workdirs(bad)


@pytest.mark.slow
def test_contrastive_sweep_smoke_scores_on_a_validation_split_from_train(tmp_path,
                                                                        synthetic_mnist_dir):
  run_script("contrastive_sweep", f"--out={tmp_path}", f"--data_dir={synthetic_mnist_dir}")
  out = tmp_path / "contrastive_sweep_smoke"
  content = json.loads((out / "results.json").read_text())
  rows = {(r["method"], r["anchor"], r["positive"]): r for r in content["rows"]}
  assert set(rows) == {("mim", "mu", "z"), ("cmim", "mu", "z"), ("cmim", "z", "second_sample")}
  assert content["rows"][0]["method"] == "mim" and "vs_mim" not in rows["mim", "mu", "z"]
  for key in (("cmim", "mu", "z"), ("cmim", "z", "second_sample")):
    row = rows[key]
    assert row["vs_mim"]["difference"] == pytest.approx(
        row["score"][0] - rows["mim", "mu", "z"]["score"][0])
    assert math.isnan(row["vs_mim"]["ci_low"])  # One seed: no CI.
    assert row["linear_vs_mim"]["difference"] == pytest.approx(
        row["linear_score"][0] - rows["mim", "mu", "z"]["linear_score"][0])
    assert 0 < row["linear_score"][0] <= 1
    assert row["contrastive_grad_share"] > 0 and 0 <= row["frac_p_positive_gt_0.99"] <= 1
  assert rows["mim", "mu", "z"]["contrastive_grad_share"] is None  # No term, no share.
  # The validation split holds training digits only: every one is a row of the train file.
  train = read_idx(synthetic_mnist_dir / "train-images-idx3-ubyte.gz").reshape(512, -1)
  validation = read_idx(out / "data" / "t10k-images-idx3-ubyte.gz").reshape(128, -1)
  assert all((train == row).all(axis=1).any() for row in validation)
  assert "val KNN-5 acc" in (out / "report.md").read_text()
  assert "val linear acc" in (out / "report.md").read_text()
  assert set(content["baselines"]) == {"raw pixels", "PCA-4"}
  report = (out / "report.md").read_text()
  assert report.index("| raw pixels |") < report.index("| PCA-4 |") < report.index("| mim |")


@pytest.mark.slow
def test_contrastive_sweep_baselines_only_scores_the_pixels_and_trains_nothing(
    tmp_path, synthetic_mnist_dir):
  run_script("contrastive_sweep", f"--out={tmp_path}", f"--data_dir={synthetic_mnist_dir}",
             "--baselines_only")
  out = tmp_path / "contrastive_sweep_smoke"
  baselines = json.loads((out / "baselines.json").read_text())["baselines"]
  assert set(baselines) == {"raw pixels", "PCA-4"}
  for scores in baselines.values():
    assert set(scores) == {"knn5_accuracy", "linear_accuracy"}
    assert all(0 < score <= 1 for score in scores.values())
  assert "| PCA-4 |" in (out / "baselines.md").read_text()
  assert (out / "data" / "t10k-images-idx3-ubyte.gz").exists()
  assert not (out / "runs").exists() and not (out / "results.json").exists()


@pytest.mark.slow
def test_infonce_augment_smoke_scores_settings_and_raw_pixels_on_validation(tmp_path,
                                                                           synthetic_mnist_dir):
  run_script("infonce_augment", f"--out={tmp_path}", f"--data_dir={synthetic_mnist_dir}")
  content = json.loads((tmp_path / "infonce_augment_smoke" / "results.json").read_text())
  assert len(content["rows"]) == 2 and content["best"] in {r["setting"] for r in content["rows"]}
  for row in content["rows"]:
    assert len(row["linear_accuracy"]) == 1 and 0 < row["linear_accuracy"][0] <= 1
  assert 0 < content["raw_pixels_linear_accuracy"] <= 1
  assert "| PCA-8 (no training) |" in (
      tmp_path / "infonce_augment_smoke" / "report.md").read_text()
