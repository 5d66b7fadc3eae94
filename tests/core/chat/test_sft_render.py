from pathlib import Path

import pyarrow.parquet as pq
from support.sft_run import demo_sft_dataset

from llmstack_dagster.core.chat.sft_index import load_sft_index
from llmstack_dagster.core.training.preflight import check_sft_inputs


def test_every_kept_conversation_is_rendered_or_dropped_with_a_reason(
    shared_data: Path, tokenizer_file: Path, tmp_path: Path
) -> None:
    folder, stats, counts = demo_sft_dataset(tmp_path, shared_data, tokenizer_file, max_len=96)
    kept = {source: c["train"] + c["val"] for source, c in counts.items()}
    for source, n in kept.items():
        rendered = stats.rendered[f"{source}/train"] + stats.rendered[f"{source}/val"]
        dropped = sum(v for k, v in stats.dropped.items() if k.startswith(f"{source}/"))
        assert rendered + dropped == n, source
    assert stats.dropped  # 96 tokens cut some replies away entirely
    assert {k.split("/")[1] for k in stats.dropped} <= {"assistant_truncated", "empty_mask"}
    index = load_sft_index(folder)
    assert index.max_len <= 96 and index.pad_id != index.eos_id
    assert sum(s.rows for s in index.shards) == sum(stats.rendered.values())
    for split in ("train", "val"):
        shards = index.split_shards(split)
        assert sum(s.tokens for s in shards) == stats.tokens[split]
        assert sum(s.trained_tokens for s in shards) == stats.trained[split]
    assert check_sft_inputs(folder, seq_len=95, global_batch=8, packing=True) == index
    rows = pq.read_table(folder / index.split_shards("train")[0].path).to_pylist()
    assert all(len(r["input_ids"]) == len(r["loss_mask"]) and any(r["loss_mask"]) for r in rows)
    assert (folder / "tokenizer.json").is_file()
