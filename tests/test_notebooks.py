"""The Colab notebooks run top to bottom (small settings) and are stored without outputs."""

import os
import pathlib
import re
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import SHARED_DATA, xla_flags

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"
NOTEBOOKS = sorted(p.name for p in COLAB.glob("*.ipynb"))
# Fewer training steps than SMALL, set in a cell run right after the settings cell (as papermill
# injects parameters): the test checks that every cell runs and draws, not what training reaches.
TEST_STEPS = {"01_quickstart.ipynb": "NUM_STEPS = 30", "02_reuse_the_loss.ipynb": "STEPS = 40",
              "03_toy_geometry.ipynb": "NUM_STEPS = 60", "04_molecules.ipynb": "SMALL_STEPS = 10"}


def test_every_notebook_is_built_from_its_source_and_has_no_outputs():
  assert NOTEBOOKS == ["01_quickstart.ipynb", "02_reuse_the_loss.ipynb",
                       "03_toy_geometry.ipynb", "04_molecules.ipynb"]
  before = {name: (COLAB / name).read_bytes() for name in NOTEBOOKS}
  subprocess.run([sys.executable, str(COLAB / "build_notebooks.py")], check=True,
                 capture_output=True)
  for name in NOTEBOOKS:
    assert (COLAB / name).read_bytes() == before[name], f"{name} differs from build_notebooks.py"
    notebook = nbformat.read(COLAB / name, as_version=4)
    assert (COLAB / name).stat().st_size < 50_000
    install = next(c.source for c in notebook.cells if c.source.startswith("# Install"))
    assert "CMIM_SOURCE" in install and "pip" in install
    assert "github.com" not in "".join(c.source for c in notebook.cells)  # No such repository.
    assert "SMALL = True" in "".join(c.source for c in notebook.cells[:4])
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
  if name == "04_molecules.ipynb" and not (SHARED_DATA / "moses").exists():
    pytest.skip(f"{SHARED_DATA} is absent: the molecules notebook would download MOSES.")
  monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
  # The kernel sees the machine's real devices; it keeps the suite's light code generation.
  monkeypatch.setenv("XLA_FLAGS", xla_flags(None))
  # MNIST is left to the notebook's own sources: offline that is the 5,000-digit fallback.
  monkeypatch.delenv("CMIM_MNIST_DIR", raising=False)
  monkeypatch.setenv("CMIM_MOSES_DIR", str(SHARED_DATA / "moses"))
  monkeypatch.setenv("CMIM_MOLECULENET_DIR", str(SHARED_DATA / "moleculenet"))
  # The kernel's own default backend (inline), as in Jupyter: a library module that chose a
  # backend on import would leave the figures below undrawn.
  monkeypatch.delenv("MPLBACKEND", raising=False)
  notebook = nbformat.read(COLAB / name, as_version=4)
  settings = next(i for i, c in enumerate(notebook.cells)
                  if c.cell_type == "code" and "SMALL = True" in c.source)
  assert TEST_STEPS[name].split(" = ")[0] in notebook.cells[settings].source
  notebook.cells.insert(settings + 1, nbformat.v4.new_code_cell(TEST_STEPS[name]))
  start = time.perf_counter()
  NotebookClient(notebook, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(COLAB)}}).execute()
  print(f"{name}: {time.perf_counter() - start:.1f} s")
  code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
  plotting = [(i, c) for i, c in code if "plt." in c.source]
  for i, cell in plotting:
    assert any("image/png" in output.get("data", {}) for output in cell.outputs), (
        f"{name}: plotting cell {i} shows no image")
  for i, cell in code:
    if "train_and_evaluate(" in cell.source:
      assert any(_is_progress(output) for output in cell.outputs), (
          f"{name}: training cell {i} shows no progress bar")


def _is_progress(output) -> bool:
  """A tqdm bar in a cell's outputs: the ipywidgets view, or its text form ("| 300/300 [")."""
  if output.output_type == "display_data":
    return "application/vnd.jupyter.widget-view+json" in output.data
  return output.output_type == "stream" and re.search(r"\| *\d+/\d+ \[", output.text) is not None
