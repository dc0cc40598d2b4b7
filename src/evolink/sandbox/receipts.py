"""Routing one ``<receipt>`` from device R (shared/docs/wa-messaging.md §6.3, §7, §9.4).

Any receipt first acknowledges the messages it names (``id`` and ``<list><item id>``) in R's own
queue. Then, by ``type``:

- none / ``inactive`` / ``read`` / ``played``: to **every** device of the original sender (the
  account of ``to`` in 1:1, of ``participant`` in groups), as
  ``<receipt from=<R's user JID, namespace of to> id t [type] [<list>]>`` or, for groups,
  ``<receipt from=<group> participant=<R device JID> …>``; ``t`` is stamped when missing (Baileys'
  delivery receipts carry none);
- ``retry``: only to the device it targets (``to`` in 1:1, ``participant`` in groups), with
  ``from`` = R's device JID (1:1) or the group + ``participant`` = R's device JID; children kept;
- ``sender``, ``read-self``, ``played-self``, ``hist_sync``, ``peer_msg``, anything else: consumed,
  not forwarded (the reader's own-device sync is not modelled; its real shape is unconfirmed).

Forwarded receipts are queued for the sender's devices like messages, until ``<ack class="receipt">``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evolink.sandbox.directory import GROUP_SERVER, parse_jid

if TYPE_CHECKING:
    from evolink.sandbox.router import Router
from evolink.wire.binary import Node

FORWARDED = {None, "inactive", "read", "played"}
MAX_LISTED = 1000


def peer_key(sender: str, participant: str | None) -> str:
    """How a queued receipt is named for its ``<ack class="receipt" to=… participant=…>``."""
    return f"{sender}|{participant or ''}"


def route(router: Router, phone: str, device: int, node: Node) -> None:
    sv = router.sv
    sid = node.attrs.get("id", "")
    if not sid or len(sid) > 128:
        return
    listed = node.child("list")
    ids = [sid] + [i.attrs.get("id", "") for i in (listed.children("item") if listed else [])[:MAX_LISTED]]
    for mid in ids:
        if mid:
            sv.routing.acknowledge(phone, device, "message", mid, None)
    kind = node.attrs.get("type")
    if kind not in FORWARDED and kind != "retry":
        return
    to = parse_jid(node.attrs.get("to"))
    if to is None:
        return
    reader = sv.directory.account(phone)
    assert reader is not None
    attrs = {"id": sid, "t": node.attrs.get("t") or str(sv.host.clock.unix())}
    if kind is not None:
        attrs["type"] = kind
    content = node.content if isinstance(node.content, list) else None
    if to.server == GROUP_SERVER:
        group = sv.routing.get_group(to.user)
        author = sv.directory.resolve(node.attrs.get("participant"))
        if group is None or author is None or phone not in {p for p, _ in group.members}:
            return
        attrs |= {"from": group.jid, "participant": reader.at(device).jid(group.addressing_mode == "lid")}
        peer = peer_key(group.jid, attrs["participant"])
    else:
        author = sv.directory.resolve(node.attrs.get("to"))
        if author is None:
            return
        from_jid = reader.at(device).jid(author.lid_form, with_device=kind == "retry")
        attrs["from"] = from_jid
        if node.attrs.get("recipient"):
            attrs["recipient"] = node.attrs["recipient"]
        peer = peer_key(from_jid, None)
    if kind == "retry":
        if not sv.directory.exists(author):
            return
        targets = [author.device]
    else:
        targets = [d for d, _ in sv.directory.devices(author.phone)]
    for target in targets:
        if author.phone == phone and target == device:
            continue
        router.deliver(author.phone, target, Node("receipt", dict(attrs), content), tag="receipt", peer=peer)
