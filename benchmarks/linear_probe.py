"""Wall time and accuracy of the JAX `linear` probe against scikit-learn's LogisticRegression.

  python -m benchmarks.linear_probe --embeddings_dir=/work/runs/mnist_cmim_default/embeddings

For each embedding (default: mean and informative) of train.npz / test.npz: times
`linear.fit_predict_classes` on every training row, weight-decay selection included, twice (the
first call compiles; the second is the steady state), and scores it on the test rows. Then fits
scikit-learn's LogisticRegression (lbfgs) on the same standardised features with the weight decay
the JAX probe chose, converted to C = 1 / (weight_decay * N) (the same objective; see
`cmim_jax.probes.linear`), and scores it likewise; its time covers that one fit, no selection.
"""

import pathlib
import time

import numpy as np
from absl import app, flags
from sklearn.linear_model import LogisticRegression

from cmim_jax.embedding import files as embedding_files
from cmim_jax.probes import linear

_EMBEDDINGS_DIR = flags.DEFINE_string("embeddings_dir", None, "Folder with train.npz, test.npz.")
_EMBEDDINGS = flags.DEFINE_list("embeddings", ["mean", "informative"], "Embeddings to probe.")
_SKLEARN = flags.DEFINE_bool("sklearn", True, "Also fit scikit-learn's LogisticRegression.")
flags.mark_flags_as_required(["embeddings_dir"])


def main(argv):
  del argv
  folder = pathlib.Path(_EMBEDDINGS_DIR.value)
  train = embedding_files.load_npz(folder / "train.npz")
  test = embedding_files.load_npz(folder / "test.npz")
  y_train, y_test = train["labels"], test["labels"]
  for name in _EMBEDDINGS.value:
    x_train, x_test = train[name], test[name]
    seconds = []
    for _ in range(2):
      start = time.perf_counter()
      predicted, chosen = linear.fit_predict_classes(x_train, y_train, x_test)
      seconds.append(time.perf_counter() - start)
    accuracy = float(np.mean(predicted == y_test))
    print(f"{name} [{x_train.shape[0]} x {x_train.shape[1]}]: jax linear {seconds[0]:.1f} s "
          f"(first call, compiling) / {seconds[1]:.1f} s (steady), accuracy {accuracy:.4f}, "
          f"weight_decay {chosen['weight_decay']:g}", flush=True)
    if not _SKLEARN.value:
      continue
    stats = linear.standardizer(x_train)
    c = 1.0 / (chosen["weight_decay"] * len(x_train))
    start = time.perf_counter()
    reference = LogisticRegression(C=c, max_iter=1000).fit(linear.standardize(x_train, stats),
                                                            y_train)
    sk_seconds = time.perf_counter() - start
    sk_accuracy = reference.score(linear.standardize(x_test, stats), y_test)
    print(f"{name}: sklearn LogisticRegression(C={c:.4g}) {sk_seconds:.1f} s, accuracy "
          f"{sk_accuracy:.4f}, iterations {int(np.max(reference.n_iter_))}; "
          f"difference {100 * (accuracy - sk_accuracy):+.2f} points", flush=True)


if __name__ == "__main__":
  app.run(main)
