"""The paper's experiments: each module orchestrates ordinary `experiments.main` runs and
aggregates them (`python -m experiments.paper.<name> --preset=smoke|cpu|full`)."""
