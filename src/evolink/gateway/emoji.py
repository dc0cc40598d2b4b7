"""``reaction`` must be "" or exactly one emoji grapheme (Evolution tests it with ``emoji-regex``).

Hand-written (no emoji library is a dependency): one base pictograph, optionally with skin-tone
modifiers, variation selectors, ZWJ-joined pictographs (family, profession sequences), tag
sequences (subdivision flags); or a regional-indicator pair (a flag); or a keycap (``1️⃣``).
"""

from __future__ import annotations

_ZWJ = 0x200D
_VS = (0xFE0E, 0xFE0F)
_KEYCAP = 0x20E3
_PICTO = ((0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2300, 0x23FF), (0x2B00, 0x2BFF), (0x2190, 0x21FF),
          (0x25AA, 0x25FE), (0x2934, 0x2935), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297),
          (0x3299, 0x3299), (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C), (0x2049, 0x2049),
          (0x2122, 0x2122), (0x2139, 0x2139), (0x24C2, 0x24C2))


def _picto(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _PICTO)


def _modifier(cp: int) -> bool:
    return 0x1F3FB <= cp <= 0x1F3FF


def _regional(cp: int) -> bool:
    return 0x1F1E6 <= cp <= 0x1F1FF


def _tag(cp: int) -> bool:
    return 0xE0020 <= cp <= 0xE007F


def is_single_emoji(text: str) -> bool:
    cps = [ord(c) for c in text]
    if not cps or len(cps) > 40:
        return False
    if len(cps) == 2 and all(_regional(c) for c in cps):
        return True
    if cps[-1] == _KEYCAP:
        body = [c for c in cps[:-1] if c not in _VS]
        return len(body) == 1 and chr(body[0]) in "0123456789#*"
    bases = 0
    after_zwj = False
    for cp in cps:
        if cp == _ZWJ:
            if after_zwj or bases == 0:
                return False
            after_zwj = True
            continue
        if cp in _VS or _modifier(cp) or _tag(cp):
            if bases == 0:
                return False
            continue
        if _picto(cp) and not _regional(cp):
            if not after_zwj:
                bases += 1
            after_zwj = False
            continue
        return False
    return bases == 1 and not after_zwj
