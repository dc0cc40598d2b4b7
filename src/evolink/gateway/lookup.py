"""``POST /chat/whatsappNumbers``: Evolution's ``whatsappNumber`` (shared/docs §2.2) on evolink.

Each input is ``create_jid``-ed and classified; the answer lists broadcast entries, then groups,
then users (Evolution's order, not the input's). ``status@broadcast`` never exists; a group exists
when its metadata can be read (``name`` = subject); an ``@lid`` JID is taken as existing
(``lid: "lid"``) without a query, as Evolution does; phone numbers go to one ``usync`` lookup and a
Brazilian/Mexican/Argentinian number matches the server's answer with or without its extra 9/1.
``name`` is the stored contact's push name. Evolution's ``IsOnWhatsapp`` cache table is not kept:
every call asks the server (documented in docs/gateway.md).
"""

from __future__ import annotations

from typing import Any

from evolink.gateway.groups import Groups, live_engine
from evolink.gateway.numbers import create_jid, variants
from evolink.wa.contacts import OnWhatsApp, on_whatsapp
from evolink.wa.events import ConnectionState


def _result(jid: str, exists: bool, number: str, name: str | None = None, lid: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"jid": jid, "exists": exists, "number": number}
    if name is not None:
        out["name"] = name
    if lid is not None:
        out["lid"] = lid
    return out


async def whatsapp_numbers(groups: Groups, numbers: list[str]) -> list[dict[str, Any]]:
    rt, chats = groups.rt, groups.chats
    broadcast: list[tuple[str, str]] = []
    group_list: list[tuple[str, str]] = []
    users: list[tuple[str, str]] = []
    for number in numbers:
        jid = create_jid(number)
        if jid.endswith("@g.us"):
            group_list.append((number, jid))
        elif jid == "status@broadcast":
            broadcast.append((number, jid))
        else:
            users.append((number, jid))
    out = [_result(jid, False, number) for number, jid in broadcast]
    for number, jid in group_list:
        meta = await groups.lookup_group(jid) if rt.state == ConnectionState.OPEN else None
        out.append(_result(meta.id, True, number, meta.subject) if meta is not None else _result(jid, False, number))

    phones = [jid.split("@", 1)[0] for _, jid in users if jid.endswith("@s.whatsapp.net")]
    asked = list(dict.fromkeys(p for p in phones if p.isdigit()))
    verified: dict[str, OnWhatsApp] = {}
    if asked:
        for r in await on_whatsapp(live_engine(rt), asked):
            verified[r.jid.split("@", 1)[0]] = r
    names = await chats.contact_names(rt.instance_id, [jid for _, jid in users]
                                      + [r.jid for r in verified.values()])
    for number, jid in users:
        if jid.endswith("@lid"):
            out.append(_result(jid, True, number, names.get(jid), "lid"))
            continue
        user = jid.split("@", 1)[0]
        raw = number if number.isdigit() else user
        match = next((verified[v] for v in variants(raw) if v in verified and verified[v].exists), None)
        if match is None:
            match = verified.get(user)
        found_jid = match.jid if match is not None else jid
        out.append(_result(found_jid, bool(match and match.exists), number, names.get(found_jid)))
    return out
