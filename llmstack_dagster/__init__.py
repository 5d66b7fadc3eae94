"""llmstack: an orchestrated LLM training stack.

The pure library lives in :mod:`llmstack_dagster.core` and imports without Dagster;
the Dagster layer (assets, resources, jobs) lives beside it and is loaded through
:mod:`llmstack_dagster.definitions`.
"""

__version__ = "0.1.0"
