"""benchmarks/device_suite.sh --tiny: every section runs on the CPU and lands in the results."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks import device_suite
from tests.conftest import xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_suite_writes_every_section(synthetic_mnist_dir, tmp_path):
  out = tmp_path / "suite.json"
  # One CPU device, like the one accelerator the suite is for (and it compiles faster than 8).
  env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT), XLA_FLAGS=xla_flags(None))
  subprocess.run(["bash", str(ROOT / "benchmarks" / "device_suite.sh"), "--tiny", f"--out={out}",
                  f"--data_dir={synthetic_mnist_dir}"], check=True, env=env, cwd=tmp_path,
                 capture_output=True, text=True, timeout=600)
  results = json.loads(out.read_text())
  assert results["tiny"] is True
  assert set(device_suite.SECTIONS) <= set(results)
  assert results["device"]["platform"] == "cpu" and results["device"]["count"] == 1
  rows = results["train_step"] + results["contrastive"] + results["perceiver_paper"]
  assert not [row for row in rows + [results["mnist_job"]] if "error" in row]
  assert {(r["encoder"], r["dtype"]) for r in results["train_step"]} == {
      ("mlp", "bfloat16"), ("conv", "bfloat16"), ("perceiver", "bfloat16")}
  assert all(r["examples_per_s"] > 0 for r in results["train_step"])
  assert [r["batch"] for r in results["contrastive"]] == [64, 256]
  assert all(r["temp_mib"] > 0 and r["seconds"] > 0 for r in results["contrastive"])
  assert results["mnist_job"]["steps"] == 2 and 0 <= results["mnist_job"]["knn5_accuracy"] <= 1
  assert [r["method"] for r in results["perceiver_paper"]] == ["cmim", "mim"]
  assert all(0 <= r["linear_probe_accuracy"] <= 1 for r in results["perceiver_paper"])
  markdown = out.with_suffix(".md").read_text()
  for section in device_suite.SECTIONS:
    assert f"## {section}\n" in markdown
  assert "## errors" not in markdown


def test_a_failed_row_is_recorded_and_reported():
  row = {"batch": 262144} | device_suite._attempt(lambda: 1 / 0)  # pylint: disable=protected-access
  assert row["error"].startswith("ZeroDivisionError")
  markdown = device_suite.markdown({"tiny": False, "contrastive": [row | {"block_size": 1024}]})
  assert "| 262,144 | 1024 | failed | failed |" in markdown
  assert "- contrastive: ZeroDivisionError" in markdown
