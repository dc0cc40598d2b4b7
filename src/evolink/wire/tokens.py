"""WABinary token dictionaries (dictionary version 3).

The tables are package data (``wire/wa-tokens.json``, copied from ``shared/protocol``) rather than
re-typed literals, and their SHA-256 fingerprints are checked at import: a corrupted or edited table
would silently mis-encode every stanza, so we refuse to start instead.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any, Final

DICT_VERSION: Final = 3

# Fingerprints from wa-protocol.md §5.5 (SHA-256 of each table joined with "\n"). Kept here, not
# only in the data file, so that a data file edited together with its own "sha256" field still fails.
SINGLE_BYTE_SHA256: Final = "1e8302d2aba0d8c40d09fd79fc9c70347350cb00926dd0e3565683b347be35a5"
DOUBLE_BYTE_SHA256: Final = (
    "c19c763b07f7684fc58490eb838873edeec498d59bf4d56bbb33d8e7af4cb112",
    "e8894a798e1d92bc5f5f5cd1c2ffeef43a5c03acb1775b34d121ffe0a19b8f6a",
    "8f4081781e324d9ab95574b01ff37a44753403cebd0d1feeeb985661cc86cae8",
    "8e397aec42a6a503621910cf3d7a8f9e287e94192031265b6e55519e0e19fadc",
)


class TokenTableError(RuntimeError):
    """The packaged token tables do not match the expected fingerprints (a packaging bug, not input)."""


def fingerprint(table: tuple[str, ...] | list[str]) -> str:
    """SHA-256 hex of the table entries joined with ``\\n`` (the fingerprint format of §5.5)."""
    return hashlib.sha256("\n".join(table).encode("utf-8")).hexdigest()


def read_package_data() -> str:
    """The raw text of the packaged ``wire/wa-tokens.json``."""
    return resources.files("evolink.wire").joinpath("wa-tokens.json").read_text(encoding="utf-8")


def load_tables(raw: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """Parse a wa-tokens.json text and check shapes and fingerprints; raises TokenTableError."""
    try:
        data: dict[str, Any] = json.loads(raw)
        single = tuple(str(s) for s in data["single_byte"])
        double = tuple(tuple(str(s) for s in table) for table in data["double_byte"])
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenTableError(f"unreadable token tables: {exc}") from None
    if data.get("dictionary_version") != DICT_VERSION:
        raise TokenTableError(f"wa-tokens.json has dictionary_version {data.get('dictionary_version')!r}")
    if len(single) != 236 or single[0] != "":
        raise TokenTableError("single-byte table must have 236 entries with index 0 = ''")
    if len(double) != 4 or any(len(t) != 256 for t in double):
        raise TokenTableError("double-byte tables must be 4 x 256 entries")
    if fingerprint(single) != SINGLE_BYTE_SHA256:
        raise TokenTableError("single-byte token table fingerprint mismatch")
    for i, table in enumerate(double):
        if fingerprint(table) != DOUBLE_BYTE_SHA256[i]:
            raise TokenTableError(f"double-byte token table {i} fingerprint mismatch")
    recorded = data.get("sha256")
    expected = {"single_byte": SINGLE_BYTE_SHA256, "double_byte": list(DOUBLE_BYTE_SHA256)}
    if recorded is not None and recorded != expected:
        raise TokenTableError("the data file's own sha256 field disagrees with the expected fingerprints")
    return single, double


SINGLE_BYTE, DOUBLE_BYTE = load_tables(read_package_data())

# Encoder maps: token string -> index. Index 0 ("") is never emitted as a token (Baileys writes "" as
# an empty BINARY_8), so it is left out.
SINGLE_BYTE_INDEX: Final[dict[str, int]] = {tok: i for i, tok in enumerate(SINGLE_BYTE) if i > 0}
DOUBLE_BYTE_INDEX: Final[dict[str, tuple[int, int]]] = {
    tok: (d, i) for d, table in enumerate(DOUBLE_BYTE) for i, tok in enumerate(table)
}

# Ready-made encodings for every token: what the encoder writes for that string.
TOKEN_BYTES: Final[dict[str, bytes]] = {
    **{tok: bytes((i,)) for tok, i in SINGLE_BYTE_INDEX.items()},
    **{tok: bytes((236 + d, i)) for tok, (d, i) in DOUBLE_BYTE_INDEX.items()},
}

__all__ = [
    "DICT_VERSION",
    "DOUBLE_BYTE",
    "DOUBLE_BYTE_INDEX",
    "SINGLE_BYTE",
    "SINGLE_BYTE_INDEX",
    "TOKEN_BYTES",
    "TokenTableError",
    "fingerprint",
    "load_tables",
    "read_package_data",
]
