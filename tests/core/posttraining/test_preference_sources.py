"""Preference sources: the HH-RLHF parser, pair checks, field mappings, hub presets, real file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llmstack_dagster.core.chat.conversation import Turn
from llmstack_dagster.core.curation.readers import SourceError
from llmstack_dagster.core.posttraining.preference_sources import (
    DEMO_MAX_PAIRS,
    PairError,
    PreferenceExample,
    PreferenceFields,
    PreferencePair,
    PreferenceSourceConfig,
    demo_preference_sources,
    hh_pair,
    parse_hh_dialogue,
    preference_hf_preset,
    read_pairs,
    shared_preference_sources,
)

PROMPT = "\n\nHuman: How do I bake bread?\n\nAssistant: Do you have yeast?\n\nHuman: Yes, a packet."
CHOSEN = PROMPT + "\n\nAssistant: Mix flour, water, yeast and salt, knead, let it rise, bake."
REJECTED = PROMPT + "\n\nAssistant: Buy some instead."


def _turns(*pairs: tuple[str, str]) -> list[Turn]:
    return [Turn(role=r, content=c) for r, c in pairs]  # type: ignore[arg-type]


def test_parse_multi_turn_dialogue() -> None:
    assert parse_hh_dialogue(CHOSEN) == _turns(
        ("user", "How do I bake bread?"),
        ("assistant", "Do you have yeast?"),
        ("user", "Yes, a packet."),
        ("assistant", "Mix flour, water, yeast and salt, knead, let it rise, bake."),
    )
    # leading and trailing whitespace, no leading blank line, inner blank lines kept
    text = "  Human: hi\n\nthere \n\nAssistant:  one\n\ntwo  \n"
    assert parse_hh_dialogue(text) == _turns(("user", "hi\n\nthere"), ("assistant", "one\n\ntwo"))


def test_parse_keeps_a_label_inside_a_reply_and_an_empty_final_turn() -> None:
    text = (
        "\n\nHuman: Hi\n\nAssistant: Human: So you like rap?\nAssistant: no"
        "\n\nHuman: Ok\n\nAssistant:"
    )
    turns = parse_hh_dialogue(text)
    assert [t.role for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[1].content == "Human: So you like rap?\nAssistant: no"
    assert turns[3].content == ""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("\n\nAssistant: Hello\n\nHuman: Hi", "start with a 'Human:'"),
        ("Preamble\n\nHuman: Hi\n\nAssistant: Yo", "start with a 'Human:'"),
        ("\n\nHuman: Hi\n\nAssistant: Yo\n\nAssistant: again", "do not alternate"),
        ("\n\nHuman: Hi\n\nHuman: twice", "do not alternate"),
        ("   \n", "empty"),
    ],
)
def test_parse_errors_are_clear(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_hh_dialogue(text)


def test_hh_pair_splits_the_shared_prompt_from_the_replies() -> None:
    pair = hh_pair(CHOSEN, REJECTED, id="x/1", source="x")
    assert isinstance(pair, PreferencePair)
    assert [t.role for t in pair.prompt] == ["user", "assistant", "user"]
    assert pair.chosen.startswith("Mix flour") and pair.rejected == "Buy some instead."
    assert (pair.id, pair.source) == ("x/1", "x")
    assert pair.conversation(pair.rejected)[-1] == Turn(role="assistant", content=pair.rejected)


@pytest.mark.parametrize(
    ("chosen", "rejected", "reason"),
    [
        (CHOSEN, "\n\nHuman: Something else\n\nAssistant: Buy some.", "prompt_mismatch"),
        (CHOSEN, PROMPT, "no_final_reply"),  # ends with the human turn
        (CHOSEN, PROMPT + "\n\nAssistant:  ", "empty_reply"),
        (CHOSEN, CHOSEN.replace("knead,", "knead,  \n"), "identical_replies"),  # whitespace only
        (CHOSEN, "\n\nAssistant: Buy some.", "unparsable"),
        ("\n\nHuman:\n\nAssistant: yes", "\n\nHuman:\n\nAssistant: no", "empty_content"),
    ],
)
def test_hh_pair_reasons(chosen: str, rejected: str, reason: str) -> None:
    result = hh_pair(chosen, rejected)
    assert isinstance(result, PairError) and result.reason == reason, result


ULTRAFEEDBACK_ROW = {
    "prompt": "Write a haiku about rain.",
    "prompt_id": "abc123",
    "chosen": [
        {"content": "Write a haiku about rain.", "role": "user"},
        {
            "content": "Soft rain on the roof\nthe gutters hum a low song\nmorning smells of earth",
            "role": "assistant",
        },
    ],
    "rejected": [
        {"content": "Write a haiku about rain.", "role": "user"},
        {"content": "Rain is water that falls.", "role": "assistant"},
    ],
    "messages": [{"content": "Write a haiku about rain.", "role": "user"}],
    "score_chosen": 8.5,
    "score_rejected": 4.0,
}


def _fake_hub(monkeypatch: pytest.MonkeyPatch, rows: list[dict[str, Any]]) -> list[dict]:
    import datasets

    calls: list[dict] = []

    def load_dataset(*args: object, **kwargs: object) -> list[dict[str, Any]]:
        calls.append({"args": args, **kwargs})
        return rows

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_ultrafeedback_preset_maps_message_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_final = {**ULTRAFEEDBACK_ROW, "rejected": ULTRAFEEDBACK_ROW["rejected"][:1]}
    other_prompt = dict(ULTRAFEEDBACK_ROW)
    other_prompt["rejected"] = [
        {"content": "Another prompt", "role": "user"},
        {"content": "x", "role": "assistant"},
    ]
    calls = _fake_hub(monkeypatch, [ULTRAFEEDBACK_ROW, bad_final, other_prompt])
    cfg = preference_hf_preset("ultrafeedback_binarized", max_pairs=10)
    assert (cfg.dataset, cfg.split, cfg.format) == (
        "HuggingFaceH4/ultrafeedback_binarized",
        "train_prefs",
        "fields",
    )
    first, second, third = read_pairs(cfg)
    assert calls[0]["args"][0] == "HuggingFaceH4/ultrafeedback_binarized"
    assert calls[0]["split"] == "train_prefs" and calls[0]["streaming"] is True
    assert isinstance(first, PreferenceExample)
    pair = first.pair
    assert pair.id == "ultrafeedback_binarized/0"
    assert pair.prompt == _turns(("user", "Write a haiku about rain."))
    assert pair.chosen.startswith("Soft rain") and pair.rejected == "Rain is water that falls."
    assert first.locator == "hf://HuggingFaceH4/ultrafeedback_binarized/train_prefs#row:0"
    assert second["reason"] == "no_final_reply" and second["locator"].endswith("#row:1")
    assert third["reason"] == "prompt_mismatch"
    assert second["stage"] == "preference_sources" and second["domain"] == "preference"


def test_hh_rlhf_presets_map_dialogues(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_hub(monkeypatch, [{"chosen": CHOSEN, "rejected": REJECTED}, {"chosen": 3}])
    items = list(read_pairs(preference_hf_preset("hh_rlhf_harmless", name="hh")))
    assert calls[0]["args"][0] == "Anthropic/hh-rlhf" and calls[0]["data_dir"] == "harmless-base"
    assert isinstance(items[0], PreferenceExample)
    assert items[0].pair.id == "hh/0" and items[0].pair.rejected == "Buy some instead."
    assert items[1]["reason"] in {"invalid_field", "missing_field"}
    assert preference_hf_preset("hh_rlhf").data_dir is None


@pytest.mark.parametrize(
    ("preset", "dataset"),
    [("hh_rlhf", "Anthropic/hh-rlhf"), ("ultrafeedback_binarized", "HuggingFaceH4/ultrafeedback")],
)
def test_offline_hub_error_names_the_dataset(
    monkeypatch: pytest.MonkeyPatch, preset: str, dataset: str
) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(SourceError, match=f"{preset}.*{dataset}.*reach"):
        list(read_pairs(preference_hf_preset(preset)))


def test_local_fields_format_and_quarantine_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl.gz"
    lines = [
        json.dumps({"q": {"text": "Name a fruit."}, "good": "Apple.", "bad": "A car."}),
        "{not json",
        json.dumps({"q": {"text": "Name a fruit."}, "good": "Apple."}),
        json.dumps(
            {
                "q": {"text": "Hi"},
                "good": [{"role": "assistant", "content": "Hello!"}],
                "bad": "Go.",
            }
        ),
        json.dumps({"q": {"text": "Same"}, "good": "Yes.", "bad": " Yes. "}),
    ]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    fields = PreferenceFields(prompt="q.text", chosen="good", rejected="bad")
    cfg = PreferenceSourceConfig(
        name="local", kind="jsonl", format="fields", fields=fields, paths=[str(path)]
    )
    items = list(read_pairs(cfg))
    assert len(items) == 5  # nothing lost
    assert isinstance(items[0], PreferenceExample) and items[0].pair.id == "local/1"
    assert items[0].pair.prompt == _turns(("user", "Name a fruit."))
    assert items[0].locator == f"{path}#line:1"
    assert items[1]["reason"] == "malformed_json" and items[1]["locator"] == f"{path}#line:2"
    assert items[2]["reason"] == "missing_field" and items[2]["id"] == "local/3"
    assert isinstance(items[3], PreferenceExample)  # a one-message list takes the prompt field
    assert items[3].pair.prompt == _turns(("user", "Hi")) and items[3].pair.chosen == "Hello!"
    assert items[4]["reason"] == "identical_replies"
    assert all(row["source"] == "local" for row in (items[1], items[2], items[4]))


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="carries its own prompt"):
        PreferenceSourceConfig(
            name="x", kind="jsonl", format="hh", paths=["a"], fields=PreferenceFields(prompt="p")
        )
    with pytest.raises(ValidationError, match="needs 'paths'"):
        PreferenceSourceConfig(name="x", kind="jsonl", format="hh")
    with pytest.raises(KeyError, match="unknown preference preset"):
        preference_hf_preset("nope")


def test_shared_hh_file(shared_data: Path) -> None:
    (cfg,) = shared_preference_sources(shared_data)
    items = list(read_pairs(cfg))
    assert len(items) == 1500
    drops = [i for i in items if isinstance(i, dict)]
    reasons = sorted(d["reason"] for d in drops)
    assert reasons == ["empty_reply"] * 4 + ["unparsable"] * 4
    assert all(d["locator"].startswith(f"{cfg.paths[0]}#line:") for d in drops)
    pairs = [i.pair for i in items if isinstance(i, PreferenceExample)]
    assert all(p.prompt and p.prompt[-1].role == "user" for p in pairs)
    assert max(len(p.prompt) for p in pairs) > 10  # long multi-turn dialogues parse
    (demo,) = demo_preference_sources(shared_data)
    assert len(list(read_pairs(demo))) == DEMO_MAX_PAIRS
