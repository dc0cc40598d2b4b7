"""Evolution's recipient rules (``src/utils/createJid.ts`` at 2.3.7) and JID checks for the API.

``create_jid`` turns what a client sends as ``number`` (digits, ``+55 (11) …``, a JID) into a JID
exactly as Evolution does, including its Brazil / Mexico / Argentina digit rules; ``check_jid``
refuses what can never be a WhatsApp recipient, so a malformed value is a clear 400 before anything
is stored or sent.
"""

from __future__ import annotations

import re

_PASS_THROUGH = ("@g.us", "@s.whatsapp.net", "@lid", "@broadcast")
_USER = re.compile(r"^\d{5,20}@s\.whatsapp\.net$")
_LID = re.compile(r"^\d{5,20}@lid$")
_GROUP = re.compile(r"^(\d{5,20}|\d{5,20}-\d{5,12})@g\.us$")


class MalformedJid(ValueError):
    """The value cannot name a WhatsApp user, LID or group."""


def _br(digits: str) -> str:
    """13 digits `55 DD 9 NNNNNNNN`: the 9 is dropped when DDD >= 31 and the number starts with 7-9."""
    if len(digits) == 13 and digits.startswith("55"):
        ddd = int(digits[2:4])
        first = int(digits[5])
        if ddd >= 31 and first >= 7:
            return digits[:4] + digits[5:]
    return digits


def _mx_ar(digits: str) -> str:
    if len(digits) == 13 and digits[:2] in ("52", "54"):
        return digits[:2] + digits[3:]
    return digits


def create_jid(number: str) -> str:
    """Evolution's ``createJid``."""
    value = re.sub(r":\d+(?=@|$)", "", number)  # a device suffix
    if any(s in value for s in _PASS_THROUGH):
        return value
    value = re.sub(r"[\s+()]", "", value).split(":", 1)[0].split("@", 1)[0]
    if "-" in value and len(value) >= 24:
        return re.sub(r"[^\d-]", "", value) + "@g.us"
    digits = re.sub(r"\D", "", value)
    if len(digits) >= 18:
        return digits + "@g.us"
    return _br(_mx_ar(digits)) + "@s.whatsapp.net"


def is_group(jid: str) -> bool:
    return jid.endswith("@g.us")


def check_jid(jid: str) -> str:
    """The lower-cased JID if it can be a recipient (user, LID or group), else ``MalformedJid``."""
    j = jid.lower()
    if _USER.match(j) or _LID.match(j) or _GROUP.match(j):
        return j
    raise MalformedJid(f'"{jid}" is not a WhatsApp number or JID')


def bare(jid: str) -> str:
    """Drop a device (``user:3@server`` -> ``user@server``)."""
    user, _, server = jid.partition("@")
    return f"{user.split(':', 1)[0]}@{server}" if server else jid
