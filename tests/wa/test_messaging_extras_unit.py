"""The extras' pure parts: stanza builders and answer parsers, including hostile answers."""

from __future__ import annotations

import pytest

from evolink.wa import contacts, reactions
from evolink.wa.message_send import SendError, stanza_type
from evolink.wire.binary import Node


def _usync(*users: Node) -> Node:
    return Node("iq", {"type": "result"}, [Node("usync", {}, [Node("list", {}, list(users))])])


def test_lookup_survives_hostile_answers() -> None:
    """Garbage users, a LID that is not one, a missing usync: answers, never a crash (wa/contacts.py)."""
    numbers = ["15550001111", "15550002222", "15550003333", "15550004444"]
    answer = _usync(
        Node("user", {"jid": "15550001111@s.whatsapp.net"}, [Node("contact", {"type": "in"}),
                                                             Node("lid", {"val": "99@lid"})]),
        Node("user", {"jid": "15550002222@s.whatsapp.net"}, [Node("contact", {"type": "out"})]),
        Node("user", {"jid": "15550003333@s.whatsapp.net"}, [Node("lid", {"val": "not-a-lid"})]),
        Node("user", {"jid": "garbage"}),
    )
    got = contacts.parse_lookup(numbers, answer)
    assert [(r.number, r.exists, r.lid) for r in got] == [
        ("15550001111", True, "99@lid"), ("15550002222", False, None), ("15550003333", False, None),
        ("15550004444", False, None)]
    assert [r.exists for r in contacts.parse_lookup(numbers, Node("iq", {"type": "result"}))] == [False] * 4


def test_reaction_message_shape() -> None:
    msg = reactions.reaction_message("g@g.us", "3EB0AA", "👍", from_me=False, participant="7:2@lid", now_ms=5)
    r = msg.reactionMessage
    assert (r.key.remoteJid, r.key.fromMe, r.key.id, r.key.participant, r.text, r.senderTimestampMs) == (
        "g@g.us", False, "3EB0AA", "7:2@lid", "👍", 5)
    assert stanza_type(msg) == "reaction"
    own = reactions.reaction_message("1@s.whatsapp.net", "X", "", from_me=True, participant="7@lid", now_ms=1)
    assert not own.reactionMessage.key.HasField("participant") and own.reactionMessage.text == ""
    with pytest.raises(SendError):
        reactions.reaction_message("1@s.whatsapp.net", "X", "x" * 33, from_me=True, participant=None, now_ms=1)
