"""Streaming input pipeline throughput vs the molecules train step's demand (SMILES/s).

  python -m benchmarks.input_pipeline --corpus=../shared/data/moses/train.csv.gz \
      [--num_smiles=100000] [--steps=200] [--epoch] [--token_file_dir=DIR]

Three figures, at the default molecules config (`experiments/configs/molecules.py`, batch 64):
  1. tokenised: SMILES/s of the one-off streaming conversion into a token file (RDKit check,
     tokenising, writing; `cmim_jax/data/token_file.py`), over the first `--num_smiles`;
  2. batched: SMILES/s the Grain pipeline serves as global device batches (shuffled row reads,
     `make_array_from_process_local_data`; `cmim_jax/data/streaming.py`), over `--steps` batches;
  3. demand: examples/s of the jitted train step, fed by that pipeline, compilation excluded.
`--epoch` instead streams one whole epoch of the token file as batches, without a model (the
pipeline's own peak memory, under `/usr/bin/time -v`). Results are recorded in
benchmarks/RESULTS.md.
"""

import itertools
import pathlib
import tempfile
import time

import jax
from absl import app, flags

from cmim_jax import objectives, sharding, training
from cmim_jax.data import molecule_files, streaming
from cmim_jax.tasks import molecules as molecule_tasks
from experiments.configs import molecules as molecules_config

_CORPUS = flags.DEFINE_string("corpus", "../shared/data/moses/train.csv.gz", "SMILES file.")
_NUM_SMILES = flags.DEFINE_integer("num_smiles", 100_000, "SMILES taken from the corpus; 0 = all.")
_STEPS = flags.DEFINE_integer("steps", 200, "Batches timed for figures 2 and 3.")
_EPOCH = flags.DEFINE_boolean("epoch", False, "Stream one whole epoch of batches, no model.")
_TOKEN_DIR = flags.DEFINE_string("token_file_dir", "", "Token files here ('' = a temp folder).")


def _rate(count: int, seconds: float) -> str:
  return f"{count / seconds:,.0f}/s ({count:,} in {seconds:.1f} s)"


def main(argv):
  del argv
  workdir = pathlib.Path(tempfile.mkdtemp(prefix="input_pipeline_"))
  corpus = pathlib.Path(_CORPUS.value)
  if _NUM_SMILES.value:
    corpus = workdir / "corpus.smi"
    lines = itertools.islice(molecule_files.iter_smiles_file(_CORPUS.value), _NUM_SMILES.value)
    corpus.write_text("SMILES\n" + "\n".join(lines) + "\n")
  config = molecules_config.get_config()
  config.data.corpus_path = str(corpus)
  config.data.pipeline = "stream"
  config.data.max_train_molecules = 0
  config.data.token_file_dir = _TOKEN_DIR.value or str(workdir / "token_files")

  task = molecule_tasks.StreamedSmilesTask(config)
  info = task.token_file_info  # The build's own time, also when an existing file is reused.
  print(f"1. tokenised (token file build): {_rate(info['rows']['read'], info['build_seconds'])}")
  source = task.train_source()

  mesh = sharding.make_data_mesh()
  batch_size, steps = config.data.batch_size, _STEPS.value
  if _EPOCH.value:
    steps = len(source) // batch_size
  batcher = streaming.StreamBatcher(source, batch_size, mesh, config.seed, steps,
                                    config.data.reader_threads, config.data.prefetch_batches)
  start = time.perf_counter()
  for local in batcher.iterator():
    jax.block_until_ready(batcher.to_global(local))
  print(f"2. batched ({len(source):,} SMILES in the token file): "
        f"{_rate(steps * batch_size, time.perf_counter() - start)}")
  if _EPOCH.value:
    return

  method = objectives.get_method(config.loss.method)
  _, state, step = training.setup(config, method, task, mesh, jax.random.key(0))
  key, iterator = jax.random.key(1), batcher.iterator()
  state, metrics = step(state, batcher.to_global(next(iterator)), key)  # Compiles.
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for local in iterator:
    state, metrics = step(state, batcher.to_global(local), key)
  jax.block_until_ready(metrics)
  print(f"3. demand (train step fed by the pipeline): "
        f"{_rate((steps - 1) * batch_size, time.perf_counter() - start)}")


if __name__ == "__main__":
  app.run(main)
