"""Quality scoring: KenLM reference LM and CCNet perplexity, Gopher/NeMo heuristics, code rules,
quality/toxicity/domain attributes and use-case presets (issue 4)."""
