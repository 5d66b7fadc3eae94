"""Evaluation of checkpoints: safety (toxicity, refusal, over-refusal), capability (GSM8K,
HumanEval) and the report card across stages. Pure library: no Dagster here."""
