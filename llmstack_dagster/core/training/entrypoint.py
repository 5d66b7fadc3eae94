"""Training entrypoint: ``python -m llmstack_dagster.core.training.entrypoint --config run.json``.

The config file is a :class:`TrainConfig` as JSON. Under Dagster Pipes (launched by
``PipesSubprocessClient`` or a remote launcher that sets the Pipes environment), rank 0
streams every metric record live as a Pipes custom message and a log line, and reports the
asset materialization at the end. Otherwise it logs to stderr. Either way it writes
``metrics.jsonl``, TensorBoard events, checkpoints, ``summary.json`` and the HF export
under ``out_dir``, and resumes from the latest complete checkpoint there. Under torchrun
every rank runs this module; only rank 0 talks to Pipes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

from llmstack_dagster.core.training.config import TrainConfig
from llmstack_dagster.core.training.engine import TrainResult, train


def materialization_metadata(cfg: TrainConfig, result: TrainResult) -> dict[str, object]:
    """Pipes metadata for the final materialization: metrics, paths and sample markdown."""
    metadata: dict[str, object] = {k.replace("/", "_"): v for k, v in result.metrics.items()}
    metadata |= {
        "step": result.step,
        "checkpoint": {"raw_value": str(result.checkpoint), "type": "path"},
        "metrics_jsonl": {"raw_value": str(Path(cfg.out_dir) / "metrics.jsonl"), "type": "path"},
        "samples": {"raw_value": result.samples_markdown, "type": "md"},
    }
    if result.hf_dir is not None:
        metadata["hf_dir"] = {"raw_value": str(result.hf_dir), "type": "path"}
    return metadata


def _run_under_pipes(cfg: TrainConfig) -> None:
    with open_dagster_pipes() as pipes:

        def report(step: int, values: dict[str, float]) -> None:
            pipes.report_custom_message({"step": step, **values})

        result = train(cfg, callbacks=[report], log=pipes.log.info)
        if pipes.is_asset_step:
            pipes.report_asset_materialization(metadata=materialization_metadata(cfg, result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig JSON file")
    args = parser.parse_args(argv)
    cfg = TrainConfig.from_file(args.config)
    if os.environ.get("RANK", "0") == "0" and PipesEnvVarParamsLoader().is_dagster_pipes_process():
        _run_under_pipes(cfg)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        train(cfg, log=logging.getLogger("llmstack.train").info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
