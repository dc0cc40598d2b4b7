"""The sandbox router from a minimal Python companion: usync, key bundles, queues, hostile stanzas."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sandbox_client import Client, Creds, iq, prekey_upload
from test_sandbox_server import _link, _login

from evolink.sandbox.server import Sandbox
from evolink.wire.binary import Node

ALICE, BOB, CAROL = "15550003001", "15550003002", "15550003003"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox.start() as sandbox:
        for phone in (ALICE, BOB, CAROL):
            sandbox.create_phone(phone)
        yield sandbox


async def _online(sb: Sandbox, creds: Creds, keys: range = range(1, 11)) -> Client:
    client, success = await _login(sb, creds)
    assert success.tag == "success"
    assert (await client.query(prekey_upload(creds, keys))).attrs["type"] == "result"
    return client


async def _until_offline_marker(client: Client) -> tuple[list[Node], int]:
    """Nodes received up to ``<ib><offline count=N/>``, and N."""
    got: list[Node] = []
    while True:
        marker = next((i.child("offline") for i in client.ib if i.child("offline") is not None), None)
        if marker is not None:
            return got, int(marker.attrs["count"])
        node = await client.recv_any(5)
        if node.tag != "ib":
            got.append(node)


def _lid(sb: Sandbox, phone: str) -> str:
    return str(sb.get_phone(phone)["lid"]).split("@")[0]


def _text_message(mid: str, to: str, devices: list[str], payload: bytes = b"\x33cipher") -> Node:
    return Node("message", {"id": mid, "to": to, "type": "text"}, [Node("participants", {}, [
        Node("to", {"jid": d}, [Node("enc", {"v": "2", "type": "msg"}, payload)]) for d in devices
    ])])


async def test_usync_and_key_bundles_in_both_namespaces(sb: Sandbox) -> None:
    a, b = await _link(sb, ALICE), await _link(sb, BOB)
    ca = await _online(sb, a)
    cb = await _online(sb, b)
    query = iq("usync", "get", [Node("usync", {"sid": "s1", "mode": "query", "context": "message"}, [
        Node("query", {}, [Node("devices", {"version": "2"}), Node("lid")]),
        Node("list", {}, [Node("user", {"jid": f"{ALICE}@s.whatsapp.net"}), Node("user", {"jid": "19990000000@s.whatsapp.net"})]),
    ])])
    answer = await cb.query(query)
    users = answer.child("usync").child("list").children("user")  # type: ignore[union-attr]
    assert [u.attrs["jid"] for u in users] == [f"{ALICE}@s.whatsapp.net", "19990000000@s.whatsapp.net"]
    devices = users[0].child("devices").child("device-list").children("device")  # type: ignore[union-attr]
    assert [d.attrs for d in devices] == [{"id": "0"}, {"id": str(a.device), "key-index": str(a.device)}]
    assert users[0].child("lid").attrs["val"] == f"{_lid(sb, ALICE)}@lid"  # type: ignore[union-attr]
    assert users[1].child("lid") is None and users[1].child("devices").child("device-list").children() == []  # type: ignore[union-attr]

    lid_dev = f"{_lid(sb, ALICE)}:{a.device}@lid"
    fetch = iq("encrypt", "get", [Node("key", {}, [Node("user", {"jid": lid_dev}), Node("user", {"jid": f"{ALICE}@s.whatsapp.net"}),
                                                   Node("user", {"jid": "19990000000:3@s.whatsapp.net"})])])
    first = (await cb.query(fetch)).child("list").children("user")  # type: ignore[union-attr]
    # Unknown devices are omitted (Baileys aborts a whole send on an <error>); JIDs echoed as asked.
    assert [u.attrs["jid"] for u in first] == [lid_dev, f"{ALICE}@s.whatsapp.net"]
    assert first[0].child("identity").content == a.identity.public  # type: ignore[union-attr]
    second = (await cb.query(fetch)).child("list").children("user")  # type: ignore[union-attr]
    opk = [u.child("key").child("id").content for u in (first[0], second[0])]  # type: ignore[union-attr]
    assert opk[0] != opk[1]  # each one-time pre-key is handed out once
    count = await ca.query(iq("encrypt", "get", [Node("count")]))
    assert count.child("count").attrs["value"] == "8"  # type: ignore[union-attr]
    # The phone (device 0) has a bundle of its own: others can open sessions to it.
    assert first[1].child("skey") is not None and first[1].child("key") is not None


async def test_hostile_message_stanzas_get_error_acks_and_nothing_is_delivered(sb: Sandbox) -> None:
    a, b, c = await _link(sb, ALICE), await _link(sb, BOB), await _link(sb, CAROL)
    ca, cb = await _online(sb, a), await _online(sb, b)
    await _online(sb, c)
    bob_dev, carol_dev = f"{BOB}:{b.device}@s.whatsapp.net", f"{CAROL}:{c.device}@s.whatsapp.net"
    group = sb.create_group("g", [BOB, CAROL])  # Alice is not a member
    added = await cb.recv()  # members' devices are told (w:gp2 create), as the real server does
    assert added.tag == "notification" and added.attrs["type"] == "w:gp2" and added.attrs["from"] == group["jid"]
    created = added.child("create")
    assert created is not None and created.child("group").attrs["subject"] == "g"  # type: ignore[union-attr]
    cases: list[tuple[Node, str]] = [
        (Node("message", {"to": f"{BOB}@s.whatsapp.net"}), "400"),  # no id
        (Node("message", {"id": "x1"}), "400"),  # no to
        (Node("message", {"id": "x2", "to": "not a jid"}), "400"),
        (Node("message", {"id": "x3", "to": f"{BOB}@s.whatsapp.net", "type": "text"}), "400"),  # no participants
        (_text_message("x4", "19990000000@s.whatsapp.net", ["19990000000@s.whatsapp.net"]), "404"),
        (_text_message("x5", f"{BOB}@s.whatsapp.net", [f"{BOB}:77@s.whatsapp.net"]), "404"),
        (_text_message("x6", f"{BOB}@s.whatsapp.net", [bob_dev, carol_dev]), "479"),  # a third account
        (_text_message("x7", f"{BOB}@s.whatsapp.net", [bob_dev] * 1025), "413"),
        (Node("message", {"id": "x8", "to": f"{BOB}@s.whatsapp.net"}, [
            Node("participants", {}, [Node("to", {"jid": bob_dev})])]), "400"),  # <to> without <enc>
        (_text_message("x9", "status@broadcast", [bob_dev]), "404"),
        (_text_message("x10", "120363999@g.us", [bob_dev]), "404"),  # unknown group
        (Node("message", {"id": "x11", "to": group["jid"]}, [Node("enc", {"v": "2", "type": "skmsg"}, b"k")]), "403"),
        (_text_message("x" * 200, f"{BOB}@s.whatsapp.net", [bob_dev]), "400"),
    ]
    for node, code in cases:
        node.attrs.setdefault("id", "")
        if not node.attrs["id"]:
            del node.attrs["id"]
        await ca.send(node)
        ack = await ca.recv()
        assert ack.tag == "ack" and ack.attrs["class"] == "message" and ack.attrs.get("error") == code, (node.attrs, ack)
    await ca.send(Node("receipt", {"id": "nope", "to": "garbage", "type": "retry"}, [Node("retry", {"count": "x"})]))
    await ca.send(Node("receipt", {}))
    await ca.send(Node("ack", {"class": "receipt"}))
    # Nothing reached Bob's socket, and the router still routes a good message afterwards.
    await ca.send(_text_message("good", f"{BOB}@s.whatsapp.net", [bob_dev]))
    assert (await ca.recv()).attrs.get("error") is None
    got = await cb.recv()
    assert got.tag == "message" and got.attrs["id"] == "good"
    assert got.attrs["from"] == f"{ALICE}:{a.device}@s.whatsapp.net"
    assert got.attrs["sender_lid"] == f"{_lid(sb, ALICE)}:{a.device}@lid"
    assert got.child("enc").content == b"\x33cipher"  # type: ignore[union-attr]


async def test_queue_redelivered_at_every_login_until_acknowledged(sb: Sandbox) -> None:
    a, b = await _link(sb, ALICE), await _link(sb, BOB)
    ca = await _online(sb, a)
    cb = await _online(sb, b)
    await _until_offline_marker(cb)
    await cb.close()
    lid_to = f"{_lid(sb, BOB)}@lid"  # addressed in the LID namespace this time
    await ca.send(_text_message("m1", lid_to, [f"{_lid(sb, BOB)}:{b.device}@lid"]))
    assert (await ca.recv()).attrs.get("error") is None
    for _ in range(2):  # not acknowledged: it comes back at each login
        cb, _success = await _login(sb, b)
        got, count = await _until_offline_marker(cb)
        assert count == 1 and [(n.tag, n.attrs["id"], n.attrs["offline"]) for n in got] == [("message", "m1", "1")]
        assert got[0].attrs["from"] == f"{_lid(sb, ALICE)}:{a.device}@lid"
        assert got[0].attrs["sender_pn"] == f"{ALICE}:{a.device}@s.whatsapp.net"
        await cb.close()
    cb, _success = await _login(sb, b)
    await _until_offline_marker(cb)
    await cb.send(Node("receipt", {"id": "m1", "to": got[0].attrs["from"]}))
    # Alice's devices get the delivery receipt (stamped with t), from Bob's user JID.
    receipt = await ca.recv()
    assert receipt.tag == "receipt" and receipt.attrs["id"] == "m1" and receipt.attrs["from"] == lid_to
    assert receipt.attrs["t"].isdigit()
    await ca.send(Node("ack", {"class": "receipt", "id": "m1", "to": lid_to}))
    await cb.close()
    cb, _success = await _login(sb, b)
    got, count = await _until_offline_marker(cb)
    assert count == 0 and got == []
    assert [d["queued"] for d in sb.get_phone(ALICE)["devices"]] == [0]


async def test_phone_answers_garbage_with_a_retry_receipt_and_keeps_going(sb: Sandbox) -> None:
    a = await _link(sb, ALICE)
    ca = await _online(sb, a)
    await _until_offline_marker(ca)
    bob_lid = _lid(sb, BOB)
    for mid, kind, body in (("bad1", "pkmsg", b"\x33garbage"), ("bad2", "msg", b""), ("bad3", "msg", b"\x00" * 64)):
        await ca.send(Node("message", {"id": mid, "to": f"{BOB}@s.whatsapp.net", "type": "text"}, [
            Node("participants", {}, [Node("to", {"jid": f"{bob_lid}@lid"}, [Node("enc", {"v": "2", "type": kind}, body)])])]))
        assert (await ca.recv()).attrs.get("error") is None
        retry = await ca.recv()
        assert retry.tag == "receipt" and retry.attrs["type"] == "retry" and retry.attrs["id"] == mid
        assert retry.attrs["from"] == f"{BOB}@s.whatsapp.net" and retry.child("registration") is not None
    received = sb.phone_received(BOB)
    assert [m["id"] for m in received] == ["bad1", "bad2", "bad3"]
    assert all(m["text"] is None and m["error"] for m in received)
    # The phone still sends and its sessions are intact.
    sent = sb.phone_send(BOB, f"{ALICE}@s.whatsapp.net", "still here")
    assert sent["devices"] == 2
    got = await ca.recv()
    assert got.tag == "message" and got.attrs["id"] == sent["id"]
    assert [e.attrs["type"] for e in got.children("enc")] == ["pkmsg"]


async def test_retry_receipt_goes_to_the_one_device_and_groups_from_a_client(sb: Sandbox) -> None:
    a, b = await _link(sb, ALICE), await _link(sb, BOB)
    ca, cb = await _online(sb, a), await _online(sb, b)
    await _until_offline_marker(ca)
    await _until_offline_marker(cb)
    alice_dev = f"{ALICE}:{a.device}@s.whatsapp.net"
    await cb.send(Node("receipt", {"id": "m9", "to": alice_dev, "type": "retry"}, [
        Node("retry", {"count": "1", "id": "m9", "t": "1", "v": "1"}), Node("registration", {}, b"\x00\x00\x00\x4d")]))
    retry = await ca.recv()
    assert retry.tag == "receipt" and retry.attrs["type"] == "retry"
    assert retry.attrs["from"] == f"{BOB}:{b.device}@s.whatsapp.net"  # the requesting device
    assert [c.tag for c in retry.children()] == ["retry", "registration"]
    # A client creates a group; its members can read the metadata (LID mode, no @g.us in the id).
    created = await ca.query(Node("iq", {"to": "@g.us", "type": "set", "xmlns": "w:g2"}, [
        Node("create", {"subject": "made by alice"}, [Node("participant", {"jid": f"{BOB}@s.whatsapp.net"})])]))
    group = created.child("group")
    assert group is not None and "@" not in group.attrs["id"]
    meta = await cb.query(Node("iq", {"to": f"{group.attrs['id']}@g.us", "type": "get", "xmlns": "w:g2"},
                               [Node("query", {"request": "interactive"})]))
    parts = meta.child("group").children("participant")  # type: ignore[union-attr]
    assert {p.attrs["phone_number"] for p in parts} == {f"{ALICE}@s.whatsapp.net", f"{BOB}@s.whatsapp.net"}
    assert {p.attrs.get("type") for p in parts} == {"superadmin", None}
    assert all(p.attrs["jid"].endswith("@lid") for p in parts)
    cc_creds = await _link(sb, CAROL)
    cc = await _online(sb, cc_creds)
    denied = await cc.query(Node("iq", {"to": f"{group.attrs['id']}@g.us", "type": "get", "xmlns": "w:g2"},
                                 [Node("query", {"request": "interactive"})]))
    assert denied.attrs["type"] == "error" and denied.child("error").attrs["code"] == "403"  # type: ignore[union-attr]


async def _next(client: Client, tag: str) -> Node:
    while True:
        node = await client.recv(5)
        if node.tag == tag:
            return node


def _whatsmeow_phash(jids: list[str]) -> str:
    """participantListHashV2 as whatsmeow computes it (AD strings user.agent:device@server)."""
    import base64
    import hashlib
    ad = sorted(f"{j.split('@')[0].split(':')[0]}.0:{j.split('@')[0].split(':')[1] if ':' in j else 0}@{j.split('@')[1]}"
                for j in jids)
    return "2:" + base64.b64encode(hashlib.sha256("".join(ad).encode()).digest()[:6]).decode().rstrip("=")


async def test_group_phash_checked_and_low_prekey_notification(sb: Sandbox) -> None:
    a, b = await _link(sb, ALICE), await _link(sb, BOB)
    ca, cb = await _online(sb, a, range(1, 7)), await _online(sb, b)
    await _until_offline_marker(ca)
    await _until_offline_marker(cb)
    group = sb.create_group("hash", [ALICE, BOB])
    devices = [f"{_lid(sb, ALICE)}@lid", f"{_lid(sb, ALICE)}:{a.device}@lid", f"{_lid(sb, BOB)}@lid",
               f"{_lid(sb, BOB)}:{b.device}@lid"]
    right = _whatsmeow_phash(devices)
    for mid, claimed, expect in (("h1", right, None), ("h2", "2:AAAAAAAA", right)):
        await ca.send(Node("message", {"id": mid, "to": group["jid"], "type": "text", "phash": claimed},
                           [Node("enc", {"v": "2", "type": "skmsg"}, b"\x33sk")]))
        ack = await _next(ca, "ack")  # (the phones' retry receipts for the fake skmsg are skipped)
        assert ack.attrs.get("error") is None and ack.attrs.get("phash") == expect
        got = await _next(cb, "message")  # delivered either way
        assert got.attrs["id"] == mid and got.attrs["participant"] == f"{_lid(sb, ALICE)}:{a.device}@lid"
        assert got.attrs["participant_pn"] == f"{ALICE}@s.whatsapp.net" and got.attrs["addressing_mode"] == "lid"
    # Alice uploaded 6 one-time pre-keys: the fetch that leaves 4 triggers her encrypt notification.
    fetch = iq("encrypt", "get", [Node("key", {}, [Node("user", {"jid": f"{ALICE}:{a.device}@s.whatsapp.net"})])])
    await cb.query(fetch)
    await cb.query(fetch)
    note = await _next(ca, "notification")
    assert note.tag == "notification" and note.attrs["type"] == "encrypt"
    assert note.child("count").attrs["value"] == "4"  # type: ignore[union-attr]
    await ca.send(Node("ack", {"class": "notification", "id": note.attrs["id"], "to": note.attrs["from"], "type": "encrypt"}))
    assert (await ca.query(prekey_upload(a, range(7, 12)))).attrs["type"] == "result"
    count = await ca.query(iq("encrypt", "get", [Node("count")]))
    assert count.child("count").attrs["value"] == "9"  # type: ignore[union-attr]


async def test_device_list_change_is_notified_to_online_devices(sb: Sandbox) -> None:
    a = await _link(sb, ALICE)
    ca = await _online(sb, a)
    await _until_offline_marker(ca)
    b = await _link(sb, BOB)
    note = await _next(ca, "notification")
    assert note.attrs["type"] == "devices" and note.attrs["from"] == f"{BOB}@s.whatsapp.net"
    update = note.child("update")
    assert update is not None and update.attrs["device_hash"]
    assert [d.attrs["jid"] for d in update.children("device")] == [
        f"{BOB}:{b.device}@s.whatsapp.net", f"{_lid(sb, BOB)}:{b.device}@lid"]
    await sb.remove_device(BOB, b.device)
    gone = await _next(ca, "notification")
    assert gone.attrs["type"] == "devices" and gone.child("update") is not None


async def test_messaging_admin_routes_validate_input(sb: Sandbox) -> None:
    import httpx
    async with httpx.AsyncClient(base_url=sb.admin_url, timeout=10) as http:
        bad = [
            ("POST", "/admin/groups", {"subject": "", "members": [ALICE]}, 400, "invalid_subject"),
            ("POST", "/admin/groups", {"subject": "s", "members": []}, 400, "invalid_members"),
            ("POST", "/admin/groups", {"subject": "s", "members": ["19990000000"]}, 404, "phone_not_found"),
            ("POST", "/admin/groups", {"subject": "s", "members": [ALICE], "addressing_mode": "x"}, 400,
             "invalid_addressing_mode"),
            ("GET", "/admin/groups/123@g.us", None, 404, "group_not_found"),
            ("POST", f"/admin/phones/{ALICE}/send", {"to": f"{BOB}@s.whatsapp.net", "text": ""}, 400, "invalid_text"),
            ("POST", f"/admin/phones/{ALICE}/send", {"to": "nope", "text": "x"}, 400, "invalid_jid"),
            ("POST", f"/admin/phones/{ALICE}/send", {"to": "1@g.us", "text": "x"}, 404, "group_not_found"),
            ("POST", f"/admin/phones/{ALICE}/read", {"ids": "x"}, 400, "invalid_ids"),
            ("GET", "/admin/phones/19990000000/received", None, 404, "phone_not_found"),
        ]
        for method, path, body, status, error in bad:
            res = await http.request(method, path, json=body)
            assert (res.status_code, res.json()["error"]) == (status, error), (path, body, res.text)
        res = await http.post("/admin/groups", json={"subject": "s", "members": [ALICE, BOB], "creator": BOB})
        assert res.status_code == 201
        group = res.json()
        assert group["creator"] == BOB and [m["admin"] for m in group["members"]] == [None, "superadmin"]
        assert (await http.get(f"/admin/groups/{group['jid']}")).json() == group
        assert (await http.get("/admin/groups")).json() == [group]
        # A phone writes to a phone: both are Signal participants without any companion.
        res = await http.post(f"/admin/phones/{ALICE}/send", json={"to": f"{BOB}@s.whatsapp.net", "text": "p2p"})
        assert res.status_code == 200 and res.json()["devices"] == 1
        await _until_phone_has(sb, BOB, "p2p")
        res = await http.post(f"/admin/phones/{BOB}/send", json={"to": group["jid"], "text": "to group"})
        assert res.status_code == 200
        await _until_phone_has(sb, ALICE, "to group")
        got = (await http.get(f"/admin/phones/{ALICE}/received")).json()
        assert [m["text"] for m in got] == ["to group"] and got[0]["chat"] == group["jid"]


async def _until_phone_has(sb: Sandbox, phone: str, text: str) -> None:
    import asyncio

    async def poll() -> None:
        while not any(m["text"] == text for m in sb.phone_received(phone)):  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), 5)


async def test_a_long_offline_queue_is_replayed_in_order_without_overflowing(sb: Sandbox) -> None:
    a, b = await _link(sb, ALICE), await _link(sb, BOB)
    ca = await _online(sb, a)
    await _until_offline_marker(ca)
    n = 1500  # more than the 1000-frame outbox that closes a client that does not read
    for i in range(n):
        await ca.send(_text_message(f"q{i}", f"{BOB}@s.whatsapp.net", [f"{BOB}:{b.device}@s.whatsapp.net"]))
    for _ in range(n):
        await _next(ca, "ack")
    cb, _success = await _login(sb, b)
    got, count = await _until_offline_marker(cb)
    assert count == n and [m.attrs["id"] for m in got] == [f"q{i}" for i in range(n)]
    assert all(m.attrs["offline"] == "1" for m in got)
