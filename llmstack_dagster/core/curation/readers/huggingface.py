"""Hugging Face datasets, streamed from the hub (or a local builder)."""

from __future__ import annotations

from collections.abc import Iterator

from llmstack_dagster.core.curation.readers.base import RawRecord, SourceError
from llmstack_dagster.core.curation.sources import HuggingFaceSource


def read_huggingface(source: HuggingFaceSource) -> Iterator[RawRecord]:
    """Stream a hub (or local builder) dataset; connection failures name the source."""
    import datasets

    where = source.dataset + (f"/{source.config_name}" if source.config_name else "")
    try:
        stream = datasets.load_dataset(
            source.dataset,
            source.config_name,
            split=source.split,
            streaming=True,
            revision=source.revision,
            data_dir=source.data_dir,
            data_files=source.data_files,
        )
        iterator = iter(stream)
    except Exception as err:  # the hub raises many types: connection, offline, not found
        raise SourceError(
            source.name,
            f"cannot open Hugging Face dataset {where!r} (split {source.split!r}): "
            f"{type(err).__name__}: {err}. Is the hub reachable (HF_HUB_OFFLINE unset, network "
            "up) and the dataset name right?",
        ) from err
    row = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except Exception as err:
            raise SourceError(
                source.name, f"streaming {where!r} failed after {row} rows: {err}"
            ) from err
        yield RawRecord(f"hf://{where}/{source.split}", f"row:{row}", record=dict(record))
        row += 1
