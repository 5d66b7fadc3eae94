"""Posttraining: preference data, the reward model, reference log-probabilities and the DPO
family. Pure library: no Dagster here."""
