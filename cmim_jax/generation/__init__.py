"""The generative half: likelihood bounds, samples and pictures, molecule generation metrics and
latent-space optimisation. `report.end_of_run` is what training calls after its evaluation."""
