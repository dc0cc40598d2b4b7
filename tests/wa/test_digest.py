"""The post-login key-bundle digest check: an answered digest changes nothing, a missing one re-uploads."""

from __future__ import annotations

from typing import Any

import pytest

from evolink.wa import prekeys
from evolink.wa.connection import QueryTimeout
from evolink.wa.creds import Creds
from evolink.wire.binary import Node


class ScriptedConn:
    """Answers each query with the next scripted reply (or raises it) and records the queries."""

    def __init__(self, *replies: Node | Exception) -> None:
        self.replies = list(replies)
        self.queries: list[Node] = []

    async def query(self, node: Node, within: float | None = None) -> Node:
        self.queries.append(node)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def _result(*children: Node) -> Node:
    return Node("iq", {"type": "result", "id": "1"}, list(children))


async def test_digest_present_uploads_nothing() -> None:
    creds = Creds.new()
    conn = ScriptedConn(_result(Node("digest", {}, [Node("type", {}, b"\x05")])))
    assert await prekeys.check_digest(conn, creds, 7) == 0  # type: ignore[arg-type]
    [q] = conn.queries
    assert (q.tag, q.attrs["type"], q.attrs["xmlns"], [c.tag for c in q.children()]) == ("iq", "get", "encrypt",
                                                                                        ["digest"])
    assert creds.pre_keys == {}


async def test_digest_missing_reuploads_a_batch() -> None:
    creds = Creds.new()
    first_id = creds.next_pre_key_id
    conn = ScriptedConn(_result(), _result())
    assert await prekeys.check_digest(conn, creds, 7) == 7  # type: ignore[arg-type]
    upload: Any = conn.queries[1]
    assert upload.attrs["type"] == "set" and len(upload.child("list").children("key")) == 7
    assert sorted(creds.pre_keys) == list(range(first_id, first_id + 7)) and creds.next_pre_key_id == first_id + 7


async def test_digest_errors_surface_typed() -> None:
    with pytest.raises(QueryTimeout):
        await prekeys.check_digest(ScriptedConn(QueryTimeout("no answer")), Creds.new(), 5)  # type: ignore[arg-type]


async def test_private_halves_are_saved_before_the_upload_leaves() -> None:
    """A crash right after the upload must not leave the server handing out keys we never stored."""
    from evolink.wa.connection import ConnectionLost

    creds = Creds.new()
    saved: list[set[int]] = []

    async def save(c: Creds) -> None:
        saved.append(set(c.pre_keys))

    conn = ScriptedConn(_result(Node("count", {"value": "0"})), ConnectionLost("killed mid-upload"))
    with pytest.raises(ConnectionLost):
        await prekeys.ensure_uploaded(conn, creds, min_count=5, upload_count=6, save=save)  # type: ignore[arg-type]
    upload: Any = conn.queries[1]
    sent_ids = {int.from_bytes(k.child("id").content, "big") for k in upload.child("list").children("key")}
    assert len(saved) == 1 and len(sent_ids) == 6 and sent_ids <= saved[0]
