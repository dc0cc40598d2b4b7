"""JID helpers for messaging: non-AD forms, Signal addresses, LID/PN pairs, message ids, phash."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

from evolink.wire.binary import Jid

PN_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
_DOMAIN = {LID_SERVER: 1, "hosted": 128, "hosted.lid": 129}


def parse(jid: str) -> Jid:
    """``Jid.parse`` that also normalises the legacy ``c.us`` server."""
    j = Jid.parse(jid)
    if j.server == "c.us":
        j = Jid(j.user, PN_SERVER, j.device, j.agent, j.integrator)
    return j


def non_ad(jid: str) -> str:
    """``user:device@server`` → ``user@server``."""
    j = parse(jid)
    return f"{j.user}@{j.server}"


def device_jid(user_jid: str, device: int) -> str:
    j = parse(user_jid)
    return str(Jid(j.user, j.server, device, j.agent))


def is_group(jid: str) -> bool:
    return jid.endswith("@" + GROUP_SERVER)


def is_lid(jid: str) -> bool:
    return jid.endswith("@" + LID_SERVER)


def signal_address(jid: str) -> str:
    """The local Signal address of a device JID as Baileys names it: ``user[_domain].device``
    (domain 1 = LID, 128 hosted, 129 hosted LID). Never on the wire."""
    j = parse(jid)
    domain = _DOMAIN.get(j.server)
    user = f"{j.user}_{domain}" if domain else j.user
    return f"{user}.{j.device}"


def same_device(a: str, b: str) -> bool:
    ja, jb = parse(a), parse(b)
    return (ja.user, ja.server, ja.device) == (jb.user, jb.server, jb.device)


def message_id(own_jid: str | None, now: float | None = None) -> str:
    """``3EB0`` + 18 upper-hex chars of SHA-256(u64 unix ‖ user@c.us in 20 bytes ‖ 16 random), as
    Baileys ``generateMessageIDV2`` and whatsmeow ``GenerateMessageID`` build it (22 chars)."""
    data = bytearray(44)
    data[0:8] = int(time.time() if now is None else now).to_bytes(8, "big")
    if own_jid:
        tag = (parse(own_jid).user + "@c.us").encode()[:20]
        data[8:8 + len(tag)] = tag
    data[28:44] = secrets.token_bytes(16)
    return "3EB0" + hashlib.sha256(bytes(data)).hexdigest().upper()[:18]


def participant_hash(device_jids: list[str]) -> str:
    """``phash`` as Baileys computes it: ``2:`` + the first 6 characters of the base64 SHA-256 of the
    sorted wire JID strings joined (whatsmeow hashes AD strings; the sandbox does not check it)."""
    digest = hashlib.sha256("".join(sorted(device_jids)).encode()).digest()
    return "2:" + base64.b64encode(digest).decode()[:6]
