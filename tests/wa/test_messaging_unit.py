"""Messaging handlers, row by row, against a recording connection and the toy cipher (msg_fakes).

Two engines A and B (and A's second device A2) exchange stanzas through a few lines of routing
glue standing in for the server; the real router sandbox and Signal package are exercised by the
integration tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from msg_fakes import FakeConn, ToyCipher, bundle_node

from evolink.wa import ack, dispatch, jids, message_recv, receipt
from evolink.wa.config import EngineConfig
from evolink.wa.creds import Creds, MemoryCredsStore
from evolink.wa.engine import Engine
from evolink.wa.events import MessageEvent, ReceiptEvent, ReceiptType, UndecryptableEvent
from evolink.wa.memory_store import MemoryMessageStore
from evolink.wa.message_send import SendError, send_message
from evolink.wa.plaintext import text_message
from evolink.wa.receipts_out import read_receipt
from evolink.wire.binary import Node

A_PN, A_LID = "15550001111", "900000001"
B_PN, B_LID = "15550002222", "900000002"


class Peer:
    def __init__(self, pn: str, lid: str, device: int) -> None:
        creds = Creds.new()
        creds.me_jid = f"{pn}:{device}@s.whatsapp.net"
        creds.me_lid = f"{lid}:{device}@lid"
        creds.account = b"signed-device-identity"
        creds.pre_keys[7] = b"\x02" * 32
        self.creds = creds
        self.store = MemoryMessageStore()
        self.engine = Engine(EngineConfig(query_timeout=1.0), MemoryCredsStore(), message_store=self.store,
                             cipher=ToyCipher())
        self.engine._creds = creds
        self.conn = FakeConn(creds)
        self.engine._conn = self.conn  # type: ignore[assignment]
        self.engine._state = "open"
        self.events: list[Any] = []
        self.engine.subscribe(self.events.append)

    @property
    def device(self) -> str:
        assert self.creds.me_jid is not None
        return self.creds.me_jid

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def server_for(sender: Peer, peers: list[Peer], groups: dict[str, list[str]] | None = None):
    """Answers the sender's usync / key / w:g2 queries about ``peers`` and acks its messages."""
    by_user: dict[str, list[Peer]] = {}
    for p in peers:
        by_user.setdefault(jids.non_ad(p.device), []).append(p)
        by_user.setdefault(jids.non_ad(p.creds.me_lid or ""), []).append(p)

    def answer(node: Node) -> Node:
        xmlns = node.attrs.get("xmlns")
        rid = node.attrs["id"]
        if xmlns == "usync":
            users = []
            for u in node.child("usync").child("list").children("user"):  # type: ignore[union-attr]
                jid = u.attrs["jid"]
                lid = jids.non_ad(by_user[jid][0].creds.me_lid or "") if by_user.get(jid) else None
                devs = [Node("device", {"id": str(jids.parse(p.device).device),
                                        **({"key-index": "1"} if jids.parse(p.device).device else {})})
                        for p in by_user.get(jid, [])]
                users.append(Node("user", {"jid": jid}, [Node("devices", {}, [Node("device-list", {}, devs)]),
                                                         Node("lid", {"val": lid} if lid else {})]))
            return Node("iq", {"type": "result", "id": rid}, [Node("usync", {}, [Node("list", {}, users)])])
        if xmlns == "encrypt" and node.child("key") is not None:
            users = []
            for u in node.child("key").children("user"):  # type: ignore[union-attr]
                jid = u.attrs["jid"]
                j = jids.parse(jid)
                for p in by_user.get(f"{j.user}@{j.server}", []):
                    if jids.parse(p.device).device == j.device:
                        users.append(bundle_node(jid, p.creds))
            return Node("iq", {"type": "result", "id": rid}, [Node("list", {}, users)])
        if xmlns == "w:g2":
            members = (groups or {})[node.attrs["to"]]
            return Node("iq", {"type": "result", "id": rid}, [Node("group", {
                "id": node.attrs["to"].split("@")[0], "addressing_mode": "lid"},
                [Node("participant", {"jid": m}) for m in members])])
        return Node("iq", {"type": "result", "id": rid})

    sender.conn.answer = answer

    def on_send(node: Node) -> None:
        if node.tag == "message":
            sender.engine.messaging.on_ack(Node("ack", {"class": "message", "id": node.attrs["id"], "t": "1700000000"}))

    sender.conn.on_send = on_send


def delivered(stanza: Node, sender: Peer, to: Peer, *, t: str = "1700000001") -> Node:
    """The stanza ``to`` receives for ``stanza`` (the server's routing, §9.3)."""
    chat = stanza.attrs["to"]
    encs: list[Node] = []
    parts = stanza.child("participants")
    for t_node in parts.children("to") if parts is not None else []:
        target = t_node.attrs["jid"]
        if jids.same_device(to.engine.messaging.canonical(target), to.engine.messaging.canonical(to.device)) or \
                jids.same_device(target, to.device) or jids.same_device(target, to.creds.me_lid or ""):
            encs += t_node.children("enc")
    encs += [e for e in stanza.children("enc")]
    lid_chat = jids.is_lid(chat) or jids.is_group(chat)
    frm = sender.creds.me_lid if lid_chat else sender.device
    assert frm is not None
    if jids.is_group(chat):
        attrs = {"from": chat, "participant": frm, "addressing_mode": "lid", "participant_pn": sender.device}
    elif jids.non_ad(to.device) == jids.non_ad(sender.device):
        attrs = {"from": sender.device, "recipient": chat}
    else:
        attrs = {"from": frm, ("sender_pn" if lid_chat else "sender_lid"): (
            sender.device if lid_chat else sender.creds.me_lid or "")}
    return Node("message", {**attrs, "id": stanza.attrs["id"], "t": t, "type": "text", "notify": "Alice"}, encs)


async def send(p: Peer, to: str, text: str, **kw: Any) -> Node:
    await send_message(p.engine, to, text_message(text), **kw)
    return p.conn.of("message")[-1]


async def recv(p: Peer, node: Node) -> None:
    await message_recv.receive(p.engine, p.conn, node)  # type: ignore[arg-type]


@pytest.fixture
def trio() -> tuple[Peer, Peer, Peer]:
    a, b, a2 = Peer(A_PN, A_LID, 1), Peer(B_PN, B_LID, 1), Peer(A_PN, A_LID, 2)
    server_for(a, [b, a2])
    server_for(b, [a, a2])
    return a, b, a2


# -------------------------------------------------------------------------- acks


def test_ack_copies_participant_recipient_and_type_only_when_present() -> None:
    n = ack.ack_for(Node("notification", {"id": "1", "from": "s.whatsapp.net"}))
    assert n.attrs == {"id": "1", "to": "s.whatsapp.net", "class": "notification"}
    n = ack.ack_for(Node("receipt", {"id": "2", "from": "g@g.us", "participant": "x@lid", "type": "read",
                                     "recipient": "y@s.whatsapp.net"}))
    assert n.attrs == {"id": "2", "to": "g@g.us", "class": "receipt", "participant": "x@lid",
                       "recipient": "y@s.whatsapp.net", "type": "read"}
    n = ack.ack_for(Node("message", {"id": "3", "from": "u@s.whatsapp.net"}), error=500, me="me:1@s.whatsapp.net")
    assert n.attrs == {"id": "3", "to": "u@s.whatsapp.net", "class": "message", "error": "500",
                       "from": "me:1@s.whatsapp.net"}


async def test_notification_receipt_and_call_are_acked_through_the_handler_map(trio: Any) -> None:
    a, _, _ = trio
    for node in (Node("notification", {"id": "n1", "from": "s.whatsapp.net", "type": "server_sync"}),
                 Node("receipt", {"id": "r1", "from": "x@s.whatsapp.net", "type": "read"}),
                 Node("call", {"id": "c1", "from": "x@s.whatsapp.net"}, [Node("offer")])):
        dispatch.dispatch(a.engine, a.conn, node)  # type: ignore[arg-type]
    await a.conn.drain()
    acks = {n.attrs["id"]: n.attrs for n in a.conn.of("ack")}
    assert acks["n1"] == {"id": "n1", "to": "s.whatsapp.net", "class": "notification", "type": "server_sync"}
    assert acks["r1"]["class"] == "receipt" and acks["r1"]["type"] == "read"
    assert acks["c1"] == {"id": "c1", "to": "x@s.whatsapp.net", "class": "call"}


async def test_low_prekey_notification_uploads_a_batch_and_a_high_count_does_not(trio: Any) -> None:
    a, _, _ = trio
    before = a.creds.next_pre_key_id
    dispatch.dispatch(a.engine, a.conn, Node("notification", {"id": "n2", "from": "s.whatsapp.net", "type": "encrypt"},
                                             [Node("count", {"value": "12"})]))  # type: ignore[arg-type]
    await a.conn.drain()
    assert not [q for q in a.conn.queries if q.attrs.get("xmlns") == "encrypt"]
    dispatch.dispatch(a.engine, a.conn, Node("notification", {"id": "n3", "from": "s.whatsapp.net", "type": "encrypt"},
                                             [Node("count", {"value": "3"})]))  # type: ignore[arg-type]
    await a.conn.drain()
    uploads = [q for q in a.conn.queries if q.attrs.get("xmlns") == "encrypt" and q.child("list") is not None]
    assert len(uploads) == 1
    ids = [int.from_bytes(k.child("id").content, "big") for k in uploads[0].child("list").children("key")]  # type: ignore[union-attr,arg-type]
    assert len(ids) == 50 and ids[0] == before and a.creds.next_pre_key_id == before + 50
    assert {n.attrs["id"] for n in a.conn.of("ack")} == {"n2", "n3"}


async def test_iq_ping_is_answered_and_unknown_stanzas_are_ignored(trio: Any) -> None:
    a, _, _ = trio
    dispatch.dispatch(a.engine, a.conn, Node("iq", {"id": "p1", "type": "get", "xmlns": "urn:xmpp:ping"}))  # type: ignore[arg-type]
    dispatch.dispatch(a.engine, a.conn, Node("presence", {"from": "x@s.whatsapp.net"}))  # type: ignore[arg-type]
    await a.conn.drain()
    assert [n.attrs for n in a.conn.sent] == [{"to": "@s.whatsapp.net", "type": "result", "id": "p1"}]


# -------------------------------------------------------------------------- receipts


def test_receipt_parsing_types_and_ids() -> None:
    ev = receipt.parse(Node("receipt", {"id": "m1", "from": "15550002222:1@s.whatsapp.net", "t": "5"}))
    assert ev == ReceiptEvent(ReceiptType.DELIVERED, None, "15550002222@s.whatsapp.net",
                              "15550002222:1@s.whatsapp.net", ("m1",), 5)
    ev = receipt.parse(Node("receipt", {"id": "m1", "from": "g1@g.us", "participant": "9:2@lid", "type": "read"},
                            [Node("list", {}, [Node("item", {"id": "m2"}), Node("item", {"id": "m3"})])]))
    assert (ev.type, ev.chat, ev.sender, ev.ids, ev.timestamp) == (ReceiptType.READ, "g1@g.us", "9:2@lid",
                                                                   ("m1", "m2", "m3"), None)
    assert receipt.parse(Node("receipt", {"id": "x", "from": "a@lid", "type": "weird"})).type is ReceiptType.OTHER


def test_read_receipt_shape() -> None:
    n = read_receipt("g1@g.us", ["m1", "m2", "m1"], participant="9:3@lid", now=77)
    assert n.attrs == {"id": "m1", "to": "g1@g.us", "type": "read", "t": "77", "participant": "9@lid"}
    assert [i.attrs["id"] for i in n.child("list").children("item")] == ["m2"]  # type: ignore[union-attr]


# -------------------------------------------------------------------------- 1:1 both ways


async def test_first_pkmsg_each_way_then_msgs_in_order(trio: Any) -> None:
    a, b, _ = trio
    out = await send(a, f"{B_PN}@s.whatsapp.net", "hello b")
    tos = {t.attrs["jid"]: t.child("enc").attrs["type"] for t in out.child("participants").children("to")}  # type: ignore[union-attr]
    assert tos == {f"{B_PN}:1@s.whatsapp.net": "pkmsg", f"{A_PN}:2@s.whatsapp.net": "pkmsg"}
    assert out.child("device-identity") is not None and out.attrs["phash"].startswith("2:")
    await recv(b, delivered(out, a, b))
    [ev] = b.of(MessageEvent)
    assert (ev.text, ev.chat, ev.from_me, ev.sender, ev.sender_lid, ev.push_name) == (
        "hello b", f"{A_PN}@s.whatsapp.net", False, f"{A_PN}:1@s.whatsapp.net", f"{A_LID}:1@lid", "Alice")
    assert b.conn.of("receipt")[-1].attrs == {"id": out.attrs["id"], "to": f"{A_PN}:1@s.whatsapp.net"}
    assert b.store.consumed_pre_keys == {7} and len(b.store.incoming) == 1
    # B answers: its session with A came from A's pkmsg, so it sends a plain msg.
    reply = await send(b, f"{A_PN}@s.whatsapp.net", "hi a")
    types = {t.attrs["jid"]: t.child("enc").attrs["type"] for t in reply.child("participants").children("to")}  # type: ignore[union-attr]
    assert types[f"{A_PN}:1@s.whatsapp.net"] == "msg"
    await recv(a, delivered(reply, b, a))
    assert [e.text for e in a.of(MessageEvent)] == ["hi a"]
    for i in range(20):
        await recv(b, delivered(await send(a, f"{B_PN}@s.whatsapp.net", f"m{i}"), a, b))
    assert [e.text for e in b.of(MessageEvent)] == ["hello b"] + [f"m{i}" for i in range(20)]
    assert not b.of(UndecryptableEvent)


async def test_own_other_device_gets_the_device_sent_copy(trio: Any) -> None:
    a, _, a2 = trio
    out = await send(a, f"{B_PN}@s.whatsapp.net", "for b, copy to me")
    await recv(a2, delivered(out, a, a2))
    [ev] = a2.of(MessageEvent)
    assert (ev.text, ev.from_me, ev.chat) == ("for b, copy to me", True, f"{B_PN}@s.whatsapp.net")
    assert a2.conn.of("receipt")[-1].attrs["type"] == "sender"


async def test_redelivery_is_stored_once_and_receipted_again(trio: Any) -> None:
    a, b, _ = trio
    out = await send(a, f"{B_PN}@s.whatsapp.net", "once")
    node = delivered(out, a, b)
    await recv(b, node)
    await recv(b, node)
    assert len(b.of(MessageEvent)) == 1 and len(b.store.incoming) == 1
    assert [r.attrs.get("type") for r in b.conn.of("receipt")] == [None, None]
    assert not b.of(UndecryptableEvent)


async def test_store_failure_sends_no_receipt_and_changes_nothing(trio: Any) -> None:
    a, b, _ = trio
    out = await send(a, f"{B_PN}@s.whatsapp.net", "fragile")

    async def broken(*_: Any) -> bool:
        raise OSError("disk full")

    b.store.save_incoming = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await recv(b, delivered(out, a, b))
    assert not b.conn.of("receipt") and not b.store.sessions and not b.of(MessageEvent)


async def test_tampered_ciphertext_gets_retry_receipts_and_the_session_survives(trio: Any) -> None:
    a, b, _ = trio
    await recv(b, delivered(await send(a, f"{B_PN}@s.whatsapp.net", "first"), a, b))
    session_before = dict(b.store.sessions)
    bad = delivered(await send(a, f"{B_PN}@s.whatsapp.net", "tampered"), a, b)
    enc = bad.child("enc")
    assert enc is not None and isinstance(enc.content, bytes)
    enc.content = enc.content[:-1] + bytes([enc.content[-1] ^ 1])
    await recv(b, bad)
    await recv(b, bad)
    r1, r2 = b.conn.of("receipt")[-2:]
    assert r1.attrs["type"] == "retry" and r1.child("retry").attrs["count"] == "1"  # type: ignore[union-attr]
    assert r1.child("registration").content == b.creds.registration_id.to_bytes(4, "big")  # type: ignore[union-attr]
    assert r1.child("keys") is None and r2.child("keys") is not None
    keys = r2.child("keys")
    assert keys.child("identity").content == b.creds.identity_public  # type: ignore[union-attr]
    assert keys.child("device-identity").content == b"signed-device-identity"  # type: ignore[union-attr]
    assert b.store.sessions == session_before and [e.retry_count for e in b.of(UndecryptableEvent)] == [1, 2]
    await recv(b, delivered(await send(a, f"{B_PN}@s.whatsapp.net", "next"), a, b))
    assert [e.text for e in b.of(MessageEvent)] == ["first", "next"]


async def test_retry_limit_then_nack(trio: Any) -> None:
    a, b, _ = trio
    bad = delivered(await send(a, f"{B_PN}@s.whatsapp.net", "x"), a, b)
    for t_node in bad.children("enc"):
        t_node.content = b"garbage-garbage"
    for _ in range(6):
        await recv(b, bad)
    assert len([r for r in b.conn.of("receipt") if r.attrs.get("type") == "retry"]) == 5
    assert b.conn.of("ack")[-1].attrs["error"] == "500"


async def test_consumed_prekey_is_never_accepted_again(trio: Any) -> None:
    a, b, _ = trio
    b.store.consumed_pre_keys.add(7)
    await recv(b, delivered(await send(a, f"{B_PN}@s.whatsapp.net", "reuses 7"), a, b))
    assert not b.of(MessageEvent) and b.of(UndecryptableEvent) and not b.store.sessions


async def test_peer_retry_receipt_makes_a_bounded_resend(trio: Any) -> None:
    a, b, _ = trio
    out = await send(a, f"{B_PN}@s.whatsapp.net", "please retry")
    bad = delivered(out, a, b)
    for e in bad.children("enc"):
        e.content = b"broken-broken-broken-broken-broken-broken"
    await recv(b, bad)
    retry = b.conn.of("receipt")[-1]
    incoming = Node("receipt", {**retry.attrs, "from": b.device}, retry.children())
    incoming.attrs.pop("to")
    for _ in range(3):
        await receipt._handle(a.engine, a.conn, incoming)  # type: ignore[arg-type]
    resends = [n for n in a.conn.of("message") if n.attrs.get("device_fanout") == "false"]
    assert len(resends) == 2
    r = resends[0]
    assert r.attrs["to"] == b.device and r.child("enc").attrs["count"] == "1"  # type: ignore[union-attr]
    assert r.child("device-identity") is not None
    b.store.sessions.clear()  # the resend is a new pkmsg from a fresh bundle
    await recv(b, Node("message", {"from": a.device, "id": out.attrs["id"], "t": "9", "sender_lid": f"{A_LID}:1@lid"},
                       r.children("enc")))
    assert [e.text for e in b.of(MessageEvent)] == ["please retry"]
    assert [e.type for e in a.of(ReceiptEvent)] == [ReceiptType.RETRY] * 3


async def test_fixed_message_id_and_server_refusal(trio: Any) -> None:
    a, _, _ = trio
    out = await send(a, f"{B_PN}@s.whatsapp.net", "fixed", message_id="3EB0FIXEDID")
    assert out.attrs["id"] == "3EB0FIXEDID" and "3EB0FIXEDID" in a.store.outgoing
    a.conn.on_send = lambda n: a.engine.messaging.on_ack(Node("ack", {"class": "message", "id": n.attrs["id"],
                                                                       "error": "479"}))
    with pytest.raises(SendError, match="479"):
        await send_message(a.engine, f"{B_PN}@s.whatsapp.net", text_message("no"))
    a.conn.on_send = None
    with pytest.raises(SendError, match="no server ack"):
        await send_message(a.engine, f"{B_PN}@s.whatsapp.net", text_message("no"), within=0.05)


def test_message_id_format() -> None:
    mid = jids.message_id("15550001111:1@s.whatsapp.net", 1700000000)
    assert len(mid) == 22 and mid.startswith("3EB0") and mid[4:] == mid[4:].upper()
    assert jids.message_id(None) != jids.message_id(None)


# -------------------------------------------------------------------------- groups


async def test_group_sender_key_distribution_then_skmsg_only(trio: Any) -> None:
    a, b, a2 = trio
    group = "120363000000000001@g.us"
    server_for(a, [b, a2], {group: [f"{A_LID}@lid", f"{B_LID}@lid"]})
    first = await send(a, group, "hello group")
    assert first.attrs["addressing_mode"] == "lid"
    assert {t.attrs["jid"] for t in first.child("participants").children("to")} == {  # type: ignore[union-attr]
        f"{B_LID}:1@lid", f"{A_LID}:2@lid"}
    assert first.children("enc")[0].attrs["type"] == "skmsg"
    await recv(b, delivered(first, a, b))
    await recv(a2, delivered(first, a, a2))
    second = await send(a, group, "again")
    assert second.child("participants") is None
    await recv(b, delivered(second, a, b))
    await recv(a2, delivered(second, a, a2))
    assert [(e.text, e.chat) for e in b.of(MessageEvent)] == [("hello group", group), ("again", group)]
    assert [e.from_me for e in a2.of(MessageEvent)] == [True, True]
    assert b.of(MessageEvent)[0].sender == f"{A_LID}:1@lid"
    assert b.of(MessageEvent)[0].sender_pn == f"{A_PN}:1@s.whatsapp.net"


async def test_skmsg_without_sender_key_gets_retry_receipt(trio: Any) -> None:
    a, b, a2 = trio
    group = "120363000000000002@g.us"
    server_for(a, [b, a2], {group: [f"{A_LID}@lid", f"{B_LID}@lid"]})
    first = await send(a, group, "lost key")
    node = delivered(first, a, b)
    node.content = [e for e in node.children("enc") if e.attrs["type"] == "skmsg"]
    await recv(b, node)
    r = b.conn.of("receipt")[-1]
    assert r.attrs["type"] == "retry" and r.attrs["participant"] == f"{A_LID}:1@lid"
    assert b.of(UndecryptableEvent)[0].reason == "no_sender_key"


async def test_malformed_stanzas_are_nacked_not_crashed(trio: Any) -> None:
    _, b, _ = trio
    await recv(b, Node("message", {"id": "x1"}))
    await recv(b, Node("message", {"id": "x2", "from": "g@g.us", "t": "1"}, [Node("enc", {"type": "skmsg"}, b"x")]))
    await recv(b, Node("message", {"id": "x3", "from": "nojid", "t": "1"}))
    assert [n.attrs.get("error") for n in b.conn.of("ack")] == ["487", "487", "487"]
    await asyncio.sleep(0)
