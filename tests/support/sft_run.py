"""A rendered SFT dataset of the bundled demo conversations, in a fresh storage root."""

from __future__ import annotations

from pathlib import Path

from llmstack_dagster.core.chat.decontamination import build_index
from llmstack_dagster.core.chat.sft_build import Kept, SFTBuildConfig, stream_conversations
from llmstack_dagster.core.chat.sft_render import RenderStats, render_sft_dataset
from llmstack_dagster.core.chat.sources import demo_sft_sources
from llmstack_dagster.core.storage import ShardManifest, Storage, write_version


def demo_sft_dataset(
    root: Path, shared_data: Path, tokenizer_file: Path, max_len: int
) -> tuple[Path, RenderStats, dict]:
    """The demo conversations rendered with ``tokenizer_file``: (folder, stats, counts)."""
    store = Storage(str(root))
    build = SFTBuildConfig()
    index = build_index(shared_data, build.eval_sets, build.ngram, build.min_tokens)
    items, counts = stream_conversations(demo_sft_sources(), index, build)
    pairs = ((i.conversation, i.split) for i in items if isinstance(i, Kept))
    with write_version(store, "sft_dataset", None, "test") as version:
        _, text, drops, stats = render_sft_dataset(store, version, pairs, tokenizer_file, max_len)
        manifest = version.commit(
            ShardManifest(asset="sft_dataset", partition=None, shards=text, drops=drops)
        )
    return Path(store.local_path(manifest.folder)), stats, counts
