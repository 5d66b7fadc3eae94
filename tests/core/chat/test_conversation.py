import pyarrow as pa
import pytest
from pydantic import ValidationError

from llmstack_dagster.core.chat.conversation import (
    CONVERSATION_SCHEMA,
    Conversation,
    Turn,
    conversations_from_table,
    conversations_table,
)


def _conversations() -> list[Conversation]:
    return [
        Conversation(
            id="a",
            source="dolly",
            turns=[
                Turn(role="system", content="Be brief."),
                Turn(role="user", content="Hi?"),
                Turn(role="assistant", content="Hello."),
            ],
        ),
        Conversation(id="b", turns=[Turn(role="user", content="")]),
    ]


def test_table_round_trip_keeps_every_field() -> None:
    table = conversations_table(_conversations())
    assert table.schema.equals(CONVERSATION_SCHEMA)
    assert conversations_from_table(table) == _conversations()
    assert table.column("source").to_pylist() == ["dolly", ""]


def test_unknown_role_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Turn(role="tool", content="x")
    bad = pa.Table.from_pylist(
        [{"id": "x", "source": "", "turns": [{"role": "tool", "content": "x"}]}],
        schema=CONVERSATION_SCHEMA,
    )
    with pytest.raises(ValidationError):
        conversations_from_table(bad)
