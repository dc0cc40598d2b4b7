"""``iq xmlns="encrypt"``: pre-key upload, count, rotate, digest and key-bundle fetch.

Protocol caveats (shared/docs/wa-messaging.md §1.2, §1.3, §9.2):

- An upload carries ``registration`` (4 B BE), ``type`` (0x05), ``identity`` (32 B), ``list`` of
  one-time pre-keys (id 3 B, value 32 B) and ``skey`` (id, value, 64-byte signature over
  ``0x05 ‖ value`` by the identity). The sandbox checks lengths and the signature (whatsmeow
  verifies bundle signatures, so a bad one must never be served) and answers a bare result.
- A bundle fetch answers each *known* device with ``<user jid=<exactly as asked>>`` and one popped
  one-time pre-key (omitted when the pool is empty); unknown devices are **omitted**, never given an
  ``<error>`` (Baileys aborts the whole send on one). A served key never comes back.
- When a fetch leaves fewer than :data:`LOW_WATER` keys, the owner gets
  ``<notification type="encrypt"><count value=N/></notification>`` (the real threshold is
  unconfirmed).
- ``digest``: Baileys only needs a ``<digest/>`` child (its content is not read).
"""

from __future__ import annotations

from evolink.sandbox import stanzas
from evolink.sandbox.routing_store import Bundle
from evolink.sandbox.services import IqRequest, Services
from evolink.wire import crypto
from evolink.wire.binary import SERVER_JID, Node

LOW_WATER = 5  # fewer unserved one-time pre-keys than this after a fetch → encrypt notification
MAX_UPLOAD = 2000  # one-time pre-keys per upload
MAX_FETCH = 1024  # device bundles per fetch
KEY_TYPE = b"\x05"


class _Bad(Exception):
    pass


def _int3(node: Node | None, tag: str) -> int:
    raw = stanzas.child_bytes(node, tag)
    if raw is None or len(raw) != 3:
        raise _Bad(f"{tag} must be 3 bytes")
    return int.from_bytes(raw, "big")


def _blob(node: Node | None, tag: str, size: int) -> bytes:
    raw = stanzas.child_bytes(node, tag)
    if raw is None or len(raw) != size:
        raise _Bad(f"{tag} must be {size} bytes")
    return raw


def _signed_prekey(skey: Node | None, identity: bytes) -> tuple[int, bytes, bytes]:
    if skey is None:
        raise _Bad("missing skey")
    spk_id, pub, sig = _int3(skey, "id"), _blob(skey, "value", 32), _blob(skey, "signature", 64)
    if not crypto.verify(identity, KEY_TYPE + pub, sig):
        raise _Bad("signed pre-key signature does not verify under the identity key")
    return spk_id, pub, sig


def upload(sv: Services, req: IqRequest) -> Node:
    iq = req.iq
    try:
        reg = stanzas.child_bytes(iq, "registration")
        if reg is None or len(reg) != 4:
            raise _Bad("registration must be 4 bytes")
        if stanzas.child_bytes(iq, "type") != KEY_TYPE:
            raise _Bad("type must be 0x05")
        identity = _blob(iq, "identity", 32)
        spk_id, spk_pub, spk_sig = _signed_prekey(iq.child("skey"), identity)
        listed = iq.child("list")
        keys = [(_int3(k, "id"), _blob(k, "value", 32)) for k in (listed.children("key") if listed else [])]
        if len(keys) > MAX_UPLOAD:
            raise _Bad(f"more than {MAX_UPLOAD} pre-keys in one upload")
    except _Bad as exc:
        return stanzas.error(iq, 400, f"bad-request: {exc}")
    sv.routing.set_bundle(req.phone, req.device, Bundle(int.from_bytes(reg, "big"), identity, spk_id, spk_pub, spk_sig))
    sv.routing.add_prekeys(req.phone, req.device, keys)
    sv.host.store.add_prekeys(req.phone, req.device, len(keys))
    return stanzas.result(iq)


def rotate(sv: Services, req: IqRequest) -> Node:
    bundle = sv.routing.get_bundle(req.phone, req.device)
    if bundle is None:
        return stanzas.error(req.iq, 406, "not-acceptable: no keys uploaded yet")
    assert req.first is not None
    try:
        spk_id, pub, sig = _signed_prekey(req.first.child("skey"), bundle.identity)
    except _Bad as exc:
        return stanzas.error(req.iq, 400, f"bad-request: {exc}")
    sv.routing.set_signed_prekey(req.phone, req.device, spk_id, pub, sig)
    return stanzas.result(req.iq)


def count(sv: Services, req: IqRequest) -> Node:
    left = sv.routing.prekey_count(req.phone, req.device)
    return stanzas.result(req.iq, [Node("count", {"value": str(left)})])


def digest(sv: Services, req: IqRequest) -> Node:
    return stanzas.result(req.iq, [Node("digest", {})])


def fetch(sv: Services, req: IqRequest) -> Node:
    assert req.first is not None
    users = req.first.children("user")
    if len(users) > MAX_FETCH:
        return stanzas.error(req.iq, 400, f"bad-request: more than {MAX_FETCH} users")
    answers: list[Node] = []
    for user in users:
        asked = user.attrs.get("jid", "")
        addr = sv.directory.resolve(asked)
        if addr is None or not sv.directory.exists(addr):
            continue
        bundle = sv.routing.get_bundle(addr.phone, addr.device)
        if bundle is None:
            continue
        children = [
            Node("registration", {}, bundle.registration_id.to_bytes(4, "big")),
            Node("type", {}, KEY_TYPE),
            Node("identity", {}, bundle.identity),
            Node("skey", {}, [
                Node("id", {}, bundle.spk_id.to_bytes(3, "big")),
                Node("value", {}, bundle.spk_pub),
                Node("signature", {}, bundle.spk_sig),
            ]),
        ]
        popped = sv.routing.pop_prekey(addr.phone, addr.device)
        if popped is not None:
            children.append(Node("key", {}, [Node("id", {}, popped[0].to_bytes(3, "big")),
                                             Node("value", {}, popped[1])]))
            left = sv.routing.prekey_count(addr.phone, addr.device)
            if left < LOW_WATER:
                sv.notify(addr.phone, addr.device, low_count_notification(left, sv.host.clock.unix()))
        answers.append(Node("user", {"jid": asked}, children))
    return stanzas.result(req.iq, [Node("list", {}, answers)])


def low_count_notification(left: int, now: int) -> Node:
    return Node("notification", {"from": SERVER_JID, "type": "encrypt", "id": stanzas.new_id(), "t": str(now)},
                [Node("count", {"value": str(left)})])
