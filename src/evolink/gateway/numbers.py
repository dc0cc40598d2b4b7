"""Evolution's ``createJid``: a caller's number or JID → the JID it means (shared/docs §2.1).

Rules, in Evolution 2.3.7's order (``src/utils/createJid.ts``): drop a ``:device`` suffix; a string
naming ``@g.us``/``@s.whatsapp.net``/``@lid``/``@broadcast`` is kept as it is; otherwise strip
spaces, ``+`` and parentheses, cut at ``:`` and ``@``; ``-`` and ≥ 24 characters is an old
``creator-time`` group id; ≥ 18 digits is a group id; Mexico/Argentina 13-digit numbers lose their
3rd digit; Brazilian 13-digit numbers lose the 9 after the DDD when DDD ≥ 31 and the subscriber
number starts with 7..9. ``variants`` gives the forms whose answer counts for a Brazilian /
Mexican / Argentinian number in a lookup (Evolution's ``whatsappNumber`` matching).
"""

from __future__ import annotations

import re

_BR = re.compile(r"^(\d{2})(\d{2})\d(\d{8})$")
_KEEP = ("@g.us", "@s.whatsapp.net", "@lid", "@broadcast")


def _mx_ar(number: str) -> str:
    if number[:2] in ("52", "54") and len(number) == 13:
        return number[:2] + number[3:]
    return number


def _br(number: str) -> str:
    m = _BR.match(number)
    if m is None or m.group(1) != "55":
        return number
    if int(m.group(3)[0]) < 7 or int(m.group(2)) < 31:
        return number
    return m.group(1) + m.group(2) + m.group(3)


def create_jid(number: str) -> str:
    number = re.sub(r":\d+", "", number, count=1)
    if any(k in number for k in _KEEP):
        return number
    number = re.sub(r"[\s+()]", "", number).split(":")[0].split("@")[0]
    if "-" in number and len(number) >= 24:
        return re.sub(r"[^\d-]", "", number) + "@g.us"
    number = re.sub(r"\D", "", number)
    if len(number) >= 18:
        return number + "@g.us"
    return _br(_mx_ar(number)) + "@s.whatsapp.net"


def variants(number: str) -> list[str]:
    """User parts whose lookup answer counts for ``number`` (raw digits as the caller gave them)."""
    out = [number]
    if number.startswith("55"):
        with_digit = number if number[4:5] == "9" and len(number) == 13 else number[:4] + "9" + number[4:]
        without = number if len(number) == 12 else number[:4] + number[5:]
        out += [with_digit, without]
    elif number.startswith(("52", "54")):
        prefix = "1" if number.startswith("52") else "9"
        with_digit = number if number[2:3] == prefix and len(number) == 13 else number[:2] + prefix + number[2:]
        without = number if len(number) == 12 else number[:2] + number[3:]
        out += [with_digit, without]
    return list(dict.fromkeys(out))
