"""The post-login iq handler table: ``(xmlns, first child tag)`` → handler.

A lookup tries ``(xmlns, tag)`` then ``(xmlns, None)``; anything unlisted (``passive``, ``w:p``
without a child, props, tctoken ``privacy set`` …) gets a plain result, which is all the clients
need. Handlers never raise on bad input: they answer an error iq.
"""

from __future__ import annotations

from evolink.sandbox import groups, prekeys, stanzas, usync
from evolink.sandbox.services import IqHandler, IqRequest, Services
from evolink.wire.binary import Node

PRIVACY_CATEGORIES = ("last", "online", "profile", "status", "readreceipts", "groupadd", "calladd")


def _props(sv: Services, req: IqRequest) -> Node:
    return stanzas.result(req.iq, [Node("props", {"protocol": "1"})])


def _blocklist(sv: Services, req: IqRequest) -> Node:
    return stanzas.result(req.iq, [Node("list", {})])


def _privacy(sv: Services, req: IqRequest) -> Node:
    if req.kind != "get":
        return stanzas.result(req.iq)  # privacy set (tctoken issuance…): fire-and-forget
    return stanzas.result(req.iq, [Node("privacy", {}, [
        Node("category", {"name": n, "value": "all"}) for n in PRIVACY_CATEGORIES
    ])])


def _plain(sv: Services, req: IqRequest) -> Node:
    return stanzas.result(req.iq)


def _encrypt_upload_or_fetch(sv: Services, req: IqRequest) -> Node:
    return prekeys.upload(sv, req) if req.kind == "set" else stanzas.error(req.iq, 400, "bad-request")


def _w_g2_query(sv: Services, req: IqRequest) -> Node:
    return groups.metadata(sv, req)


HANDLERS: dict[tuple[str, str | None], IqHandler] = {
    ("encrypt", "count"): prekeys.count,
    ("encrypt", "registration"): _encrypt_upload_or_fetch,
    ("encrypt", "identity"): _encrypt_upload_or_fetch,
    ("encrypt", "list"): _encrypt_upload_or_fetch,
    ("encrypt", "digest"): prekeys.digest,
    ("encrypt", "key"): prekeys.fetch,
    ("encrypt", "rotate"): prekeys.rotate,
    ("usync", "usync"): usync.query,
    ("w:g2", "query"): _w_g2_query,
    ("w:g2", "participating"): groups.participating,
    ("w:g2", "create"): groups.create,
    ("w:g2", "description"): groups.description,
    ("w:g2", "promote"): groups.promote_or_demote,
    ("w:g2", "demote"): groups.promote_or_demote,
    ("abt", "props"): _props,
    ("blocklist", None): _blocklist,
    ("privacy", None): _privacy,
    ("md", "remove-companion-device"): _plain,  # the connection then removes the device
}


def answer(sv: Services, req: IqRequest) -> Node:
    xmlns = req.iq.attrs.get("xmlns", "")
    tag = req.first.tag if req.first is not None else None
    handler = HANDLERS.get((xmlns, tag)) or HANDLERS.get((xmlns, None)) or _plain
    return handler(sv, req)
