"""The extras' pure parts: stanza builders and answer parsers, including hostile answers."""

from __future__ import annotations

import pytest

from evolink.wa import groups, onwhatsapp, reactions
from evolink.wa.message_send import SendError, stanza_type
from evolink.wire.binary import Node


def _usync(*users: Node) -> Node:
    return Node("iq", {"type": "result"}, [Node("usync", {}, [Node("list", {}, list(users))])])


def test_contact_query_and_answer() -> None:
    q = onwhatsapp.query(["15550001111"], "s1")
    usync = q.child("usync")
    assert usync is not None and usync.attrs["context"] == "interactive"
    assert [c.tag for c in usync.child("query").children()] == ["contact", "lid"]  # type: ignore[union-attr]
    user = usync.child("list").children("user")[0]  # type: ignore[union-attr]
    assert user.child("contact").content == "+15550001111"  # type: ignore[union-attr]
    answer = _usync(
        Node("user", {"jid": "15550001111@s.whatsapp.net"}, [Node("contact", {"type": "in"}),
                                                             Node("lid", {"val": "99@lid"})]),
        Node("user", {"jid": "15550002222@s.whatsapp.net"}, [Node("contact", {"type": "out"})]),
        Node("user", {"jid": "15550003333@s.whatsapp.net"}, [Node("lid", {"val": "not-a-lid"})]),
        Node("user", {"jid": "garbage"}),
    )
    assert onwhatsapp.parse(answer) == {"15550001111@s.whatsapp.net": (True, "99@lid"),
                                        "15550002222@s.whatsapp.net": (False, None),
                                        "15550003333@s.whatsapp.net": (False, None)}
    with pytest.raises(SendError):
        onwhatsapp.parse(Node("iq", {"type": "result"}))


@pytest.mark.parametrize("bad", ["", "+", "abc", "1234", "1" * 21, "+1 555"])
def test_bad_numbers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        onwhatsapp.digits_of(bad)


def test_numbers_in_any_usual_form() -> None:
    assert {onwhatsapp.digits_of(n) for n in ("+15550001111", "15550001111@s.whatsapp.net",
                                              "15550001111:3@s.whatsapp.net")} == {"15550001111"}


def test_group_answer_parsing_learns_nothing_from_garbage() -> None:
    reply = Node("iq", {"type": "result"}, [Node("group", {"id": "1203", "subject": "s", "creation": "x",
                                                           "addressing_mode": "lid"}, [
        Node("participant", {"jid": "7@lid", "phone_number": "1555@s.whatsapp.net", "type": "superadmin"}),
        Node("participant", {"jid": "nonsense"}),
    ])])
    info = groups.parse_group(reply)
    assert info.jid == "1203@g.us" and info.creation == 0 and info.addressing_mode == "lid"
    assert info.participants == (groups.Participant("7@lid", "1555@s.whatsapp.net", "7@lid", "superadmin"),)
    with pytest.raises(SendError):
        groups.parse_group(Node("iq", {"type": "result"}))
    with pytest.raises(SendError):
        groups.parse_group(Node("iq", {}, [Node("group", {})]))


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
