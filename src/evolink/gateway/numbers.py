"""Number lookups: Evolution's ``createJid`` (``gateway.jid_rules``, shared/docs §2.1) and the
forms whose answer counts for a Brazilian / Mexican / Argentinian number in a lookup (``variants``,
Evolution's ``whatsappNumber`` matching: with or without the 9 after the DDD, the 1 / 9 after 52 / 54).
"""

from __future__ import annotations

from evolink.gateway.jid_rules import create_jid

__all__ = ["create_jid", "variants"]


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
