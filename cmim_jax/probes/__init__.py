"""Probes of frozen embeddings and the z-score / rank comparison of runs.

  suite      the probes (KNN, linear, MLP, random forest, and selectable logistic regression and
             linear SVM; KNN, linear, RBF SVR, MLP, random forest and selectable ridge for
             regression) and their metrics
  linear     the JAX `linear` probe: softmax / ridge regression on all training rows
  controls   baselines derived from the files: PCA of the raw inputs, a random expansion of mu
  partial    one result file per finished (probe, embedding), reused by a rerun
  evaluate   runs the suite on a run's embedding files (train/test, or split schemes)
  compare    z-scores and ranks across runs and embeddings
  geometry   radii, pairwise angles and cosine similarities of mean encodings
  report     markdown tables and PNG figures
  workflows  the file-level jobs behind `experiments.probe` and `experiments.compare`
"""

from cmim_jax.probes.evaluate import ProbeSettings, run_probes
from cmim_jax.probes.workflows import compare_runs, probe_run

__all__ = ["ProbeSettings", "compare_runs", "probe_run", "run_probes"]
