"""Embeddings of a trained auto-encoder: compute them, restore a run to embed with, read the files.

  compute   mean encodings and informative embeddings in padded, sharded batches (under `tasks`)
  restore   rebuild a trained run from its checkpoint and write `<workdir>/embeddings/<split>.npz`
  files     the `.npz` layout, its writer and reader (imports numpy only)

The public API is re-exported here:
  trained = embedding.load_trained("/tmp/cmim_mnist")   # latest checkpoint and its saved config
  vectors = embedding.embed_arrays(trained, inputs)     # {"mean": [N, D], "informative": [N, H]}
  arrays = embedding.load_npz("/tmp/cmim_mnist/embeddings/test.npz")

The re-exports load their module on first use (PEP 562): `compute` sits below `cmim_jax.tasks`
and `restore` above it, so importing both here would make `tasks -> embedding -> tasks` a cycle,
and reading files must not import JAX.
"""

import importlib

_EXPORTS = {
    "embed_inputs": "compute",
    "Trained": "restore",
    "load_trained": "restore",
    "embed_arrays": "restore",
    "embed_split": "restore",
    "write_embeddings": "restore",
    "embeddings_dir": "files",
    "load_npz": "files",
    "save_npz": "files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
  return getattr(module, name)


def __dir__():
  return sorted({*globals(), *_EXPORTS})
