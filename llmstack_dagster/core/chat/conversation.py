"""The one conversation format every post-training stage reads: SFT, reward models, DPO, CAI.

A conversation is an ordered list of turns, each a role and its text. On disk it is an Arrow
table of ``CONVERSATION_SCHEMA`` (one row per conversation, the turns a list of structs).
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
from pydantic import BaseModel

Role = Literal["system", "user", "assistant"]

TURN_TYPE = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
    ]
)
CONVERSATION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("turns", pa.list_(TURN_TYPE), nullable=False),
    ]
)


class Turn(BaseModel):
    role: Role
    content: str


class Conversation(BaseModel):
    id: str
    source: str = ""
    turns: list[Turn]


def conversations_table(conversations: list[Conversation]) -> pa.Table:
    """Conversations as a table of ``CONVERSATION_SCHEMA``."""
    rows = [c.model_dump() for c in conversations]
    return pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA)


def conversations_from_table(table: pa.Table) -> list[Conversation]:
    """The conversations of a ``CONVERSATION_SCHEMA`` table (turn roles validated)."""
    columns = table.select(["id", "source", "turns"]).to_pylist()
    return [Conversation.model_validate(row) for row in columns]
