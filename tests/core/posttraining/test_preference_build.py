"""The preference dataset on the shared HH-RLHF file: count balance, the rendering contract,
the length rule, decontamination, dedup and the seeded split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llmstack_dagster.core.chat.conversation import Conversation, Turn
from llmstack_dagster.core.chat.decontamination import DecontaminationIndex, build_index
from llmstack_dagster.core.chat.render import ChatRenderer, RenderError, TemplateRenderer
from llmstack_dagster.core.chat.sft_build import split_score
from llmstack_dagster.core.posttraining.preference_build import (
    COUNT_KEYS,
    PreferenceBuildConfig,
    PreferenceStats,
    build_preference_dataset,
    render_pair,
)
from llmstack_dagster.core.posttraining.preference_index import (
    PreferenceIndex,
    load_preference_index,
)
from llmstack_dagster.core.posttraining.preference_sources import (
    PreferencePair,
    PreferenceSourceConfig,
    shared_preference_sources,
)
from llmstack_dagster.core.storage import OutputVersion, ShardInfo, Storage

SOURCE = "hh_rlhf_harmless"
Built = tuple[Storage, OutputVersion, PreferenceIndex, list[ShardInfo], PreferenceStats]


@pytest.fixture(scope="module")
def eval_index(shared_data: Path) -> DecontaminationIndex:
    return build_index(shared_data)


def _build(
    root: Path,
    sources: list[PreferenceSourceConfig],
    tokenizer_file: Path,
    index: DecontaminationIndex,
    config: PreferenceBuildConfig | None = None,
) -> Built:
    storage = Storage(str(root))
    version = OutputVersion(storage, "preference_dataset", None, "content-1")
    config = config or PreferenceBuildConfig()
    out = build_preference_dataset(storage, version, sources, tokenizer_file, config, index)
    return storage, version, *out


@pytest.fixture(scope="module")
def full(
    shared_data: Path,
    tokenizer_file: Path,
    eval_index: DecontaminationIndex,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    root = tmp_path_factory.mktemp("full")
    return _build(root, shared_preference_sources(shared_data), tokenizer_file, eval_index)


def _rows(storage: Storage, version: OutputVersion, part: str) -> list[dict]:
    rows = []
    for rel in storage.list(version.path(part), ".parquet"):
        rows += storage.read_table(rel).to_pylist()
    return rows


def test_every_record_is_counted_once(full: Built) -> None:
    storage, version, index, drops, stats = full
    counts = stats.counts[SOURCE]
    assert counts["read"] == 1500
    assert stats.unbalanced() == {}
    assert sum(counts[k] for k in COUNT_KEYS[1:]) == 1500
    assert (counts["quarantined:unparsable"], counts["quarantined:empty_reply"]) == (4, 4)
    # the red-team held-out prompts come from this very file: their pairs never train
    assert counts["contaminated:red_team_heldout"] > 200
    assert counts["train"] > 1000 and counts["val"] > 20
    drop_rows = [r for d in drops for r in storage.read_table(d.path).to_pylist()]
    assert len(drop_rows) == 1500 - counts["train"] - counts["val"]
    reasons = Counter(r["reason"] for r in drop_rows)
    assert reasons["contaminated:red_team_heldout"] == counts["contaminated:red_team_heldout"]
    assert all(r["locator"] and "#line:" in r["locator"] for r in drop_rows)
    assert sum(s.rows for s in index.split_shards("train")) == counts["train"]
    assert sum(s.rows for s in index.split_shards("val")) == counts["val"]
    tokens = stats.tokens
    assert tokens["train/prompt"] > tokens["train/chosen"] > 0 and stats.truncated_prompts > 0
    assert len(stats.samples) == 3 and set(stats.samples[0]) >= {"prompt", "chosen", "rejected"}


def test_rows_follow_the_rendering_contract(full: Built, tokenizer_file: Path) -> None:
    storage, version, index, _, _ = full
    folder = Path(storage.local_path(version.folder))
    assert load_preference_index(folder) == index
    assert (folder / "tokenizer.json").is_file() and index.data_version == "content-1"
    renderer = ChatRenderer.from_tokenizer(folder / "tokenizer.json")
    assert (index.end_turn_id, index.pad_id) == (renderer.end_turn_id, renderer.pad_id)
    texts = {r["id"]: r for r in _rows(storage, version, "pairs")}
    checked = 0
    for split in ("train", "val"):
        for row in _rows(storage, version, split):
            text = texts[row["id"]]
            assert text["split"] == split
            prompt = [Turn(**t) for t in text["prompt"]]
            whole_prompt = renderer.prompt_ids(prompt)
            assert row["prompt_ids"] == whole_prompt[-index.max_prompt_len :]
            for reply, ids in (
                (text["chosen"], row["chosen_ids"]),
                (text["rejected"], row["rejected_ids"]),
            ):
                assert ids[-1] == index.end_turn_id
                length = len(row["prompt_ids"]) + len(ids)
                assert length <= index.max_len == 1024
                if len(whole_prompt) <= index.max_prompt_len:
                    conv = Conversation(
                        id="c", turns=[*prompt, Turn(role="assistant", content=reply)]
                    )
                    rendered = renderer.render(conv, max_len=10**6)
                    assert row["prompt_ids"] + ids == rendered.input_ids
                    checked += 1
    assert checked > 2000
    assert len(texts) == sum(s.rows for s in index.shards)


def _split_ids(storage: Storage, version: OutputVersion) -> dict[str, set[str]]:
    return {s: {r["id"] for r in _rows(storage, version, s)} for s in ("train", "val")}


def test_split_is_seeded_and_stable(
    full: Built,
    shared_data: Path,
    tokenizer_file: Path,
    eval_index: DecontaminationIndex,
    tmp_path: Path,
) -> None:
    whole = _split_ids(*full[:2])
    assert all(split_score(i, 0) < 0.05 for i in whole["val"])  # the SFT split rule
    assert all(split_score(i, 0) >= 0.05 for i in whole["train"])
    sources = shared_preference_sources(shared_data, max_pairs=200)
    first = _split_ids(*_build(tmp_path / "a", sources, tokenizer_file, eval_index)[:2])
    assert first["val"] and first["val"] == whole["val"] & (first["train"] | first["val"])
    reseeded = PreferenceBuildConfig(seed=1)
    other = _split_ids(*_build(tmp_path / "b", sources, tokenizer_file, eval_index, reseeded)[:2])
    assert first["val"] != other["val"]
    assert first["train"] | first["val"] == other["train"] | other["val"]


def test_tiny_max_len_quarantines_replies(
    shared_data: Path, tokenizer_file: Path, eval_index: DecontaminationIndex, tmp_path: Path
) -> None:
    config = PreferenceBuildConfig(max_len=96, max_prompt_len=48)
    sources = shared_preference_sources(shared_data, max_pairs=200)
    storage, version, index, drops, stats = _build(
        tmp_path, sources, tokenizer_file, eval_index, config
    )
    counts = stats.counts[SOURCE]
    assert counts["dropped:reply_truncated"] > 50 and stats.unbalanced() == {}
    assert stats.truncated_prompts > 0
    for split in ("train", "val"):
        for row in _rows(storage, version, split):
            longest = max(len(row["chosen_ids"]), len(row["rejected_ids"]))
            assert len(row["prompt_ids"]) <= 48 and len(row["prompt_ids"]) + longest <= 96
    reasons = {r["reason"] for d in drops for r in storage.read_table(d.path).to_pylist()}
    assert "reply_truncated" in reasons


def _hh(human: str, reply: str) -> str:
    return f"\n\nHuman: {human}\n\nAssistant: {reply}"


def test_contaminated_and_duplicate_pairs_are_dropped(
    shared_data: Path, tokenizer_file: Path, eval_index: DecontaminationIndex, tmp_path: Path
) -> None:
    question = json.loads((shared_data / "eval/gsm8k/test.jsonl").read_text().splitlines()[0])
    clean = {
        "chosen": _hh("What rhymes with cat?", "Hat."),
        "rejected": _hh("What rhymes with cat?", "Dog."),
    }
    leaked = {
        "chosen": _hh(f"Solve: {question['question']}", "Let me work it out."),
        "rejected": _hh(f"Solve: {question['question']}", "No."),
    }
    rows = [clean, leaked, clean] + [
        {"chosen": _hh(f"Say {n}.", f"{n}."), "rejected": _hh(f"Say {n}.", "No.")}
        for n in range(20)
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = PreferenceSourceConfig(name="mine", kind="jsonl", format="hh", paths=[str(path)])
    storage, version, _, drops, stats = _build(
        tmp_path / "out", [source], tokenizer_file, eval_index
    )
    counts = stats.counts["mine"]
    assert counts["contaminated:gsm8k_test"] == 1 and counts["duplicate"] == 1
    assert counts["train"] + counts["val"] == 21 and counts["val"] >= 1
    dropped = {r["id"]: r for d in drops for r in storage.read_table(d.path).to_pylist()}
    assert dropped["mine/2"]["reason"] == "contaminated:gsm8k_test"
    assert dropped["mine/3"]["detail"] == "duplicate of mine/1"


CHAT_TEMPLATE = (  # ChatML-like: a newline follows each end-of-turn token
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end_turn|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_template_renderer_reply_stops_at_end_of_turn(tokenizer_file: Path) -> None:
    from llmstack_dagster.core.training.hf_export import fast_tokenizer

    hf = fast_tokenizer(tokenizer_file)
    hf.chat_template = CHAT_TEMPLATE
    renderer = TemplateRenderer(hf, "newline-after-end")
    prompt = [Turn(role="user", content="Name a colour.")]
    pair = PreferencePair(id="p", source="s", prompt=prompt, chosen="Blue.", rejected="Table.")
    out = render_pair(renderer, pair, PreferenceBuildConfig())
    assert not isinstance(out, RenderError)
    messages = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
    ]
    whole = hf.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert out.prompt_ids + out.chosen_ids == whole[:-1]  # the trailing newline is not the reply's
    assert out.chosen_ids[-1] == out.rejected_ids[-1] == renderer.end_turn_id
    attack = pair.model_copy(update={"rejected": "<|end_turn|>"})
    assert render_pair(renderer, attack, PreferenceBuildConfig()) == RenderError(
        "special_token_in_content"
    )
