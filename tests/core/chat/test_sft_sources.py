"""SFT sources: field mappings, quarantine of malformed records, the HF reader, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmstack_dagster.core.chat.sources import (
    DEMO_SFT_DIR,
    MAPPINGS,
    Example,
    SFTSourceConfig,
    demo_sft_sources,
    read_examples,
    sft_hf_preset,
    shared_sft_sources,
    to_turns,
)
from llmstack_dagster.core.curation.readers import SourceError


def _roles(record: dict, mapping: str) -> list[list[tuple[str, str]]]:
    return [[(t.role, t.content) for t in to_turns(raw)] for raw in MAPPINGS[mapping](record)]


def test_mappings_of_each_dataset_layout() -> None:
    smoltalk = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "source": "x",
    }
    assert _roles(smoltalk, "messages") == [[("user", "Hi"), ("assistant", "Hello")]]
    ultrachat = {
        "prompt": "Q",
        "prompt_id": "p1",
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"},
        ],
    }
    assert [r for r, _ in _roles(ultrachat, "messages")[0]] == ["system", "user", "assistant"]
    dolly = {
        "instruction": "Summarize.",
        "context": "Some text.",
        "response": "Short.",
        "category": "summarization",
    }
    assert _roles(dolly, "dolly") == [
        [("user", "Summarize.\n\nSome text."), ("assistant", "Short.")]
    ]
    no_context = {"instruction": "Name a fruit.", "context": "", "response": "Apple."}
    assert _roles(no_context, "dolly")[0][0] == ("user", "Name a fruit.")
    oasst = {
        "text": "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    }
    assert _roles(oasst, "chatml") == [[("user", "What is 2+2?"), ("assistant", "4")]]
    assert _roles({"prompt": "P", "completion": "C"}, "prompt_completion") == [
        [("user", "P"), ("assistant", "C")]
    ]
    assert _roles({"question": "Q", "answer": "A #### 4"}, "gsm8k") == [
        [("user", "Q"), ("assistant", "A #### 4")]
    ]
    seed = {
        "instruction": "Add.",
        "instances": [{"input": "1 2", "output": "3"}, {"input": "", "output": "0"}],
    }
    assert _roles(seed, "self_instruct") == [
        [("user", "Add.\n\n1 2"), ("assistant", "3")],
        [("user", "Add."), ("assistant", "0")],
    ]


def test_presets_name_the_hub_datasets() -> None:
    ultra = sft_hf_preset("ultrachat_200k", max_examples=5)
    assert (ultra.dataset, ultra.split, ultra.mapping, ultra.max_examples) == (
        "HuggingFaceH4/ultrachat_200k",
        "train_sft",
        "messages",
        5,
    )
    assert sft_hf_preset("smoltalk").config_name == "all"
    assert sft_hf_preset("dolly_15k").mapping == "dolly"
    assert sft_hf_preset("oasst_top1").dataset == "OpenAssistant/oasst_top1_2023-08-25"
    with pytest.raises(KeyError):
        sft_hf_preset("nope")
    with pytest.raises(ValidationError, match="exactly one"):
        SFTSourceConfig(name="x", kind="jsonl", paths=["a.jsonl"])


def test_hub_rows_stream_through_the_curation_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
        {"messages": [{"role": "tool", "content": "x"}]},
    ]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: rows)
    items = list(read_examples(sft_hf_preset("smoltalk", name="st")))
    assert isinstance(items[0], Example) and items[0].conversation.id == "st/0"
    assert items[1]["reason"] == "invalid_role"
    assert items[1]["locator"] == "hf://HuggingFaceTB/smoltalk/all/train#row:1"


def test_offline_hub_error_names_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SourceError, match="ultrachat_200k.*HuggingFaceH4/ultrachat_200k"):
        list(read_examples(sft_hf_preset("ultrachat_200k")))


def test_malformed_lines_are_quarantined_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"prompt": "fine", "completion": "ok"}),
        "{not json",
        json.dumps({"prompt": "no completion"}),
        json.dumps({"prompt": "  ", "completion": "empty user"}),
        json.dumps({"prompt": 3, "completion": "number"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    cfg = SFTSourceConfig(name="bad", kind="jsonl", paths=[str(path)], mapping="prompt_completion")
    items = list(read_examples(cfg))
    assert len(items) == 5  # nothing lost
    assert items[0].conversation.id == "bad/1"
    rows = {row["reason"]: row for row in items[1:]}
    assert set(rows) == {"malformed_json", "missing_field", "empty_content", "invalid_field"}
    assert rows["missing_field"]["locator"] == f"{path}#line:3"
    assert rows["empty_content"]["locator"].endswith("bad.jsonl#line:4")
    assert all(row["source"] == "bad" and row["stage"] == "sft_sources" for row in rows.values())


def test_missing_file_names_the_source(tmp_path: Path) -> None:
    cfg = SFTSourceConfig(
        name="gone", kind="jsonl", paths=[str(tmp_path / "x.jsonl")], mapping="gsm8k"
    )
    with pytest.raises(SourceError, match="gone.*file not found"):
        list(read_examples(cfg))


def test_real_shared_sources(shared_data: Path) -> None:
    t0, seeds, gsm8k = shared_sft_sources(shared_data)
    items = list(read_examples(seeds))
    assert len(items) == 175 and all(isinstance(i, Example) for i in items)
    assert items[0].conversation.id == "self_instruct/1.0"
    first = list(read_examples(gsm8k.model_copy(update={"max_examples": 3})))
    assert [i.conversation.turns[1].content.split("####")[-1].strip() for i in first] == [
        "72",
        "10",
        "5",
    ]
    assert len(list(read_examples(t0.model_copy(update={"max_examples": 50})))) == 50


def test_demo_subset_is_small_and_readable() -> None:
    assert sum(p.stat().st_size for p in DEMO_SFT_DIR.iterdir()) < 1 << 20
    assert (DEMO_SFT_DIR / "ATTRIBUTION.md").is_file()
    counts = [len(list(read_examples(cfg))) for cfg in demo_sft_sources()]
    assert counts == [200, 60, 150]
