"""cmim-jax: the contrastive Mutual Information Machine (cMIM) in JAX and Flax.

`cmim_jax.losses` is self-contained (it imports jax only); import it alone to use the loss terms in
another project.
"""

__version__ = "0.1.0"
