"""Probes of frozen embeddings and the z-score / rank comparison of runs (scikit-learn, no JAX).

  suite      the probes (KNN, logistic regression, MLP, linear SVM, random forest; KNN, ridge, RBF
             SVR, MLP, random forest for regression) and their metrics
  evaluate   runs the suite on a run's embedding files (train/test, or split schemes)
  compare    z-scores and ranks across runs and embeddings
  geometry   radii, pairwise angles and cosine similarities of mean encodings
  report     markdown tables and PNG figures
  workflows  the file-level jobs behind `experiments.probe` and `experiments.compare`
"""

from cmim_jax.probes.evaluate import ProbeSettings, run_probes
from cmim_jax.probes.workflows import compare_runs, probe_run

__all__ = ["ProbeSettings", "compare_runs", "probe_run", "run_probes"]
