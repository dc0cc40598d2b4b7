"""Validation of user-typed identifiers, in one place for every route (issue 10 item 9).

- ``phone_number(value)``: a phone number as API clients type it → bare international digits. Only
  ASCII digits count (Python's ``\\d`` and ``str.isdigit`` also accept Arabic-Indic, full-width and
  other Unicode digits, which WhatsApp does not). Accepted around the digits: one leading ``+``,
  spaces, ``-``, ``.``, ``(``, ``)`` between digits, and a JID suffix ``@s.whatsapp.net`` /
  ``@c.us``. Refused: anything else, a leading ``-`` (a negative number), fewer than 7 or more than
  15 digits, a trunk ``0`` first. Raises ``InvalidNumber``.
- ``instance_name(value)``: an instance name → its NFKC form, checked against ``NAME_CHARSET_DOC``.
  Raises ``InvalidName``. ``lookup_name(value)`` is the NFKC form only (never refuses), for finding an
  instance by the name a client typed: a name created as ``ｔｅｓｔ`` is stored and found as ``test``.
"""

from __future__ import annotations

import re
import unicodedata

from evolink.wa.pair_code import InvalidPhoneNumber, normalize_phone

NAME_MAX = 255  # the column width (Evolution's VarChar(255))
NAME_CHARSET_DOC = ("ASCII letters and digits; the Latin letters with diacritics of Latin-1 Supplement and "
                    "Latin Extended-A (À-ž, without × ÷ ı ĸ ŉ ſ); - _ . @ + # ( ) and space "
                    f"(not first or last); 1 to {NAME_MAX} characters after NFKC normalisation")

_ASCII_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_PUNCT = frozenset(" -_.@+#()")
# Letters that look like another Latin letter (or are not letters): refused even inside the block.
_CONFUSABLE_LATIN = frozenset("\u00d7\u00f7\u0131\u0138\u0149\u017f")
_PHONE_CHARS = re.compile(r"\+?[0-9][0-9 ().\-]*", re.ASCII)
_JID_SUFFIXES = ("@s.whatsapp.net", "@c.us")


class InvalidNumber(ValueError):
    """`number` is not ASCII digits with a country code."""


class InvalidName(ValueError):
    """An instance name outside the documented character set."""


def _bad_number(value: str, why: str) -> InvalidNumber:
    return InvalidNumber(f'"{value}" is not a phone number: {why}, e.g. 5511999999999')


def phone_number(value: str) -> str:
    """Bare international digits from a typed phone number (see the module doc); InvalidNumber if not one."""
    local = value.strip()
    for suffix in _JID_SUFFIXES:
        if local.endswith(suffix):
            local = local[: -len(suffix)]
            break
    if local.startswith("-"):
        raise _bad_number(value, "a phone number is not negative")
    if not _PHONE_CHARS.fullmatch(local):
        raise _bad_number(value, "use ASCII digits 0-9 with the country code")
    digits = "".join(ch for ch in local if "0" <= ch <= "9")
    if len(digits) < 7:
        raise _bad_number(value, "too few digits")
    try:
        return normalize_phone(digits)
    except InvalidPhoneNumber as exc:
        raise _bad_number(value, str(exc)) from exc


def lookup_name(value: str) -> str:
    """The NFKC form of a typed name (how names are stored), without refusing anything."""
    return unicodedata.normalize("NFKC", value)


def _name_char_ok(ch: str) -> bool:
    if ch in _ASCII_NAME or ch in _NAME_PUNCT:
        return True
    return "\u00c0" <= ch <= "\u017e" and ch not in _CONFUSABLE_LATIN and unicodedata.category(ch).startswith("L")


def instance_name(value: str) -> str:
    """The stored form of a new instance name: NFKC, within NAME_CHARSET_DOC; InvalidName otherwise."""
    name = lookup_name(value)
    if not name:
        raise InvalidName("the instance name cannot be empty")
    if len(name) > NAME_MAX:
        raise InvalidName(f"the instance name is longer than {NAME_MAX} characters")
    bad = sorted({ch for ch in name if not _name_char_ok(ch)})
    if bad:
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad)
        raise InvalidName(f"the instance name contains characters outside its set ({shown}); allowed: "
                          f"{NAME_CHARSET_DOC}")
    if name[0] == " " or name[-1] == " ":
        raise InvalidName("the instance name cannot start or end with a space")
    return name
