"""Routing one ``<message>`` from device S (shared/docs/wa-messaging.md §5, §9.3).

The stanza is checked as a whole before anything is delivered (all or nothing), then the server
answers ``<ack class="message" id from=<to> t>``; a refused stanza gets the same ack with an
``error`` code and is delivered to nobody:

| error | meaning (a sandbox convention; the real server's codes are not documented) |
|---|---|
| 400 | malformed: no ``id``/``to``, a ``<to>`` without ``jid`` or ``<enc>``, nothing to deliver |
| 403 | the sender is not a member of the group |
| 404 | unknown recipient account, group or device |
| 413 | more than :data:`MAX_FANOUT` ``<to>`` entries |
| 479 | a ``<to>`` device is neither the recipient's nor the sender's own (SMAX "invalid") |

- **1:1**: each ``<participants><to jid=D>`` goes to device D (PN or LID, mapped across
  namespaces); a message to a device JID with no participants (a retry resend) carries its
  top-level ``<enc>`` to that device only; ``category="peer"`` goes to the sender's phone.
  The copy for another user has ``from`` = S in the namespace of ``to`` plus ``sender_lid`` /
  ``sender_pn``; the copy for S's own devices has ``recipient`` = the chat and
  ``peer_recipient_pn`` / ``peer_recipient_lid`` instead.
- **Group**: every device of every member except S gets its own ``<enc>`` from
  ``<participants>`` (if any) **followed by** the ``skmsg`` (Baileys fails a skmsg placed before
  the SKDM that carries its key); ``from`` = the group, ``participant`` = S in the group's
  namespace, ``participant_pn`` / ``participant_lid``, ``addressing_mode``.
- ``phash`` (whatsmeow sends it on group messages): compared with the hash of the group's device
  list; on a mismatch the ack carries the server's ``phash`` so the client refreshes its cache.
- ``<enc>`` attributes and bytes are never touched; ``edit`` and ``category`` are copied.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

from evolink.sandbox.directory import GROUP_SERVER, USER_SERVERS, Address, parse_jid

if TYPE_CHECKING:
    from evolink.sandbox.router import Router
from evolink.wire.binary import Node

MAX_FANOUT = 1024  # <to> entries in one message
MAX_ID = 128
COPIED = ("type", "edit", "category")


class Refused(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def ack(node: Node, now: int, error: int | None = None, phash: str | None = None) -> Node:
    attrs = {"class": "message", "id": node.attrs.get("id", "")[:MAX_ID], "t": str(now)}
    to = node.attrs.get("to")
    if to and len(to) <= 256:
        attrs["from"] = to
    if error is not None:
        attrs["error"] = str(error)
    if phash is not None:
        attrs["phash"] = phash
    return Node("ack", attrs)


def participant_hash(jids: list[str]) -> str:
    """whatsmeow's ``participantListHashV2`` over AD strings ``user.agent:device@server``."""
    ad = sorted(f"{j.split('@')[0].split(':')[0]}.0:{_device(j)}@{j.split('@')[1]}" for j in jids)
    digest = hashlib.sha256("".join(ad).encode()).digest()
    return "2:" + base64.b64encode(digest[:6]).decode().rstrip("=")


def _device(jid: str) -> int:
    user = jid.split("@")[0]
    return int(user.split(":")[1]) if ":" in user else 0


def route(router: Router, phone: str, device: int, node: Node) -> Node:
    sv = router.sv
    now = sv.host.clock.unix()
    sender = sv.directory.account(phone)
    assert sender is not None
    sender = sender.at(device)
    try:
        sid = node.attrs.get("id", "")
        if not sid or len(sid) > MAX_ID:
            raise Refused(400, "message without a usable id")
        to = parse_jid(node.attrs.get("to"))
        if to is None:
            raise Refused(400, "message without a usable to")
        if to.server == GROUP_SERVER:
            phash = _route_group(router, sender, node, to.user, now)
            return ack(node, now, phash=phash)
        if to.server in USER_SERVERS:
            _route_direct(router, sender, node, now)
            return ack(node, now)
        raise Refused(404, f"no route to server {to.server[:32]}")
    except Refused as exc:
        return ack(node, now, error=exc.code)


def _encs(node: Node) -> list[Node]:
    return node.children("enc")


def _fanout(router: Router, node: Node) -> list[tuple[Address, list[Node]]]:
    """The ``<participants>`` entries, resolved; refuses the whole stanza on one bad entry."""
    parts = node.child("participants")
    if parts is None:
        return []
    entries = parts.children("to")
    if len(entries) > MAX_FANOUT:
        raise Refused(413, f"more than {MAX_FANOUT} participants")
    out = []
    for entry in entries:
        addr = router.sv.directory.resolve(entry.attrs.get("jid"))
        encs = _encs(entry)
        if not encs:
            raise Refused(400, "participant without <enc>")
        if addr is None or not router.sv.directory.exists(addr):
            raise Refused(404, "unknown participant device")
        out.append((addr, encs))
    return out


def _base_attrs(node: Node, now: int) -> dict[str, str]:
    attrs = {"id": node.attrs["id"], "t": str(now)}
    for key in COPIED:
        if key in node.attrs:
            attrs[key] = node.attrs[key]
    return attrs


def _route_direct(router: Router, sender: Address, node: Node, now: int) -> None:
    sv = router.sv
    chat = sv.directory.resolve(node.attrs.get("to"))
    if chat is None:
        raise Refused(404, "unknown recipient")
    deliveries = _fanout(router, node)
    if node.attrs.get("category") == "peer" and not deliveries:
        deliveries = [(sender.at(0), _encs(node))]
    elif not deliveries and chat.device and _encs(node):
        deliveries = [(chat, _encs(node))]  # retry resend to one device (device_fanout="false")
    if not deliveries:
        raise Refused(400, "nothing to deliver (no participants)")
    if chat.device and not sv.directory.exists(chat):
        raise Refused(404, "unknown recipient device")
    for addr, _ in deliveries:
        if addr.phone not in (chat.phone, sender.phone):
            raise Refused(479, "participant device of a third account")
        if addr.phone == sender.phone and addr.device == sender.device:
            raise Refused(479, "a message cannot be routed to its own sending device")
    ns_lid = chat.lid_form
    from_jid = sender.jid(ns_lid)
    chat_user = chat.jid(with_device=False)
    notify = sv.push_names.get(sender.phone)
    for addr, encs in deliveries:
        attrs = {"from": from_jid, **_base_attrs(node, now)}
        if notify:
            attrs["notify"] = notify
        if addr.phone == sender.phone and chat.phone != sender.phone:
            attrs["recipient"] = chat_user
            attrs["peer_recipient_lid" if not ns_lid else "peer_recipient_pn"] = chat.alternate_user_jid
        else:
            attrs["sender_lid" if not ns_lid else "sender_pn"] = sender.jid(not ns_lid)
        router.deliver(addr.phone, addr.device, Node("message", attrs, list(encs)), tag="message", peer=from_jid)


def _route_group(router: Router, sender: Address, node: Node, gid: str, now: int) -> str | None:
    sv = router.sv
    group = sv.routing.get_group(gid)
    if group is None:
        raise Refused(404, "unknown group")
    members = [p for p, _ in group.members]
    if sender.phone not in members:
        raise Refused(403, "sender is not a member of the group")
    lid_mode = group.addressing_mode == "lid"
    devices: list[Address] = []
    for phone in members:
        acct = sv.directory.account(phone, lid_mode)
        if acct is not None:
            devices += [acct.at(d) for d, _ in sv.directory.devices(phone)]
    member_keys = {(a.phone, a.device) for a in devices}
    own: dict[tuple[str, int], list[Node]] = {}
    for addr, encs in _fanout(router, node):
        if (addr.phone, addr.device) not in member_keys:
            raise Refused(479, "participant device is not a member of the group")
        own[(addr.phone, addr.device)] = encs
    skmsg = [e for e in _encs(node) if e.attrs.get("type") == "skmsg"]
    targets = devices
    retry_to = node.attrs.get("participant")
    if retry_to is not None:  # retry resend: the top-level <enc> to that one device
        retry = sv.directory.resolve(retry_to)
        if retry is None or (retry.phone, retry.device) not in member_keys:
            raise Refused(479, "retry participant is not a member device")
        own[(retry.phone, retry.device)] = _encs(node)
        skmsg, targets = [], [retry]
    if not skmsg and not own:
        raise Refused(400, "nothing to deliver (no skmsg and no participants)")
    sender_jid = sender.jid(lid_mode)
    base = {"from": group.jid, "participant": sender_jid, "addressing_mode": group.addressing_mode,
            "participant_pn" if lid_mode else "participant_lid": sender.jid(not lid_mode, with_device=False),
            **_base_attrs(node, now)}
    if sv.push_names.get(sender.phone):
        base["notify"] = sv.push_names[sender.phone]
    for addr in targets:
        if addr.phone == sender.phone and addr.device == sender.device:
            continue
        encs = own.get((addr.phone, addr.device), []) + skmsg
        if encs:
            router.deliver(addr.phone, addr.device, Node("message", dict(base), encs), tag="message",
                           peer=group.jid)
    claimed = node.attrs.get("phash")
    if claimed is None:
        return None
    expected = participant_hash([a.jid() for a in devices])
    return None if claimed == expected else expected
