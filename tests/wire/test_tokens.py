"""Token tables: fingerprints, shape, the indices the protocol doc names, and tamper detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from evolink.wire import tokens
from evolink.wire.tokens import (
    DICT_VERSION,
    DOUBLE_BYTE,
    DOUBLE_BYTE_INDEX,
    SINGLE_BYTE,
    SINGLE_BYTE_INDEX,
    TOKEN_BYTES,
    TokenTableError,
    load_tables,
    read_package_data,
)

SHARED_TOKENS = Path("/work/shared/protocol/wa-tokens.json")


def _sha(table: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(table).encode()).hexdigest()


def test_fingerprints_match_protocol_doc() -> None:
    assert _sha(SINGLE_BYTE) == "1e8302d2aba0d8c40d09fd79fc9c70347350cb00926dd0e3565683b347be35a5"
    assert [_sha(t) for t in DOUBLE_BYTE] == [
        "c19c763b07f7684fc58490eb838873edeec498d59bf4d56bbb33d8e7af4cb112",
        "e8894a798e1d92bc5f5f5cd1c2ffeef43a5c03acb1775b34d121ffe0a19b8f6a",
        "8f4081781e324d9ab95574b01ff37a44753403cebd0d1feeeb985661cc86cae8",
        "8e397aec42a6a503621910cf3d7a8f9e287e94192031265b6e55519e0e19fadc",
    ]


def test_shape_and_version() -> None:
    assert DICT_VERSION == 3
    assert len(SINGLE_BYTE) == 236 and SINGLE_BYTE[0] == ""
    assert [len(t) for t in DOUBLE_BYTE] == [256, 256, 256, 256]
    assert (DOUBLE_BYTE[0][0], DOUBLE_BYTE[0][-1]) == ("read-self", "mute_v2")
    assert (DOUBLE_BYTE[1][0], DOUBLE_BYTE[1][-1]) == ("reject", "u_aud_limit_sil_restarts_test1")
    assert (DOUBLE_BYTE[2][0], DOUBLE_BYTE[2][-1]) == ("64", "1537")
    assert (DOUBLE_BYTE[3][0], DOUBLE_BYTE[3][-1]) == ("1724", "1961")


@pytest.mark.skipif(not SHARED_TOKENS.exists(), reason="shared protocol data not present")
def test_package_data_is_a_copy_of_the_shared_file() -> None:
    assert json.loads(read_package_data()) == json.loads(SHARED_TOKENS.read_text())


@pytest.mark.parametrize(
    ("token", "index"),
    [
        ("xmlstreamstart", 1), ("xmlstreamend", 2), ("s.whatsapp.net", 3), ("type", 4), ("from", 6),
        ("id", 8), ("notification", 9), ("to", 17), ("offline", 18), ("result", 20), ("class", 21),
        ("xmlns", 22), ("iq", 25), ("t", 26), ("ack", 27), ("edge_routing", 40), ("get", 41),
        ("device", 59), ("count", 65), ("platform", 74), ("success", 76), ("key-index", 80),
        ("ping", 86), ("w:p", 87), ("set", 90), ("code", 112), ("lid", 118), ("stream:error", 157),
        ("encrypt", 203), ("device-identity", 230),
    ],
)  # fmt: skip
def test_single_byte_indices(token: str, index: int) -> None:
    assert SINGLE_BYTE[index] == token
    assert SINGLE_BYTE_INDEX[token] == index
    assert TOKEN_BYTES[token] == bytes([index])


@pytest.mark.parametrize(
    ("token", "where"),
    [("active", (0, 1)), ("conflict", (0, 14)), ("replaced", (0, 17)), ("passive", (0, 24)),
     ("ref", (1, 80)), ("pair-device", (1, 238)), ("failure", (2, 60))],
)  # fmt: skip
def test_double_byte_indices(token: str, where: tuple[int, int]) -> None:
    assert DOUBLE_BYTE_INDEX[token] == where
    assert TOKEN_BYTES[token] == bytes([236 + where[0], where[1]])


def test_no_duplicates_and_non_tokens() -> None:
    everything = list(SINGLE_BYTE[1:]) + [t for table in DOUBLE_BYTE for t in table]
    assert len(everything) == len(set(everything)) == len(TOKEN_BYTES)
    for raw in ("pair-success", "md", "ib", "digest", "link_code_companion_reg", ""):
        assert raw not in TOKEN_BYTES


def _tampered(mutate: str) -> str:
    data = json.loads(read_package_data())
    if mutate == "single":
        data["single_byte"][5] = "participants"
    elif mutate == "double":
        data["double_byte"][3][255] = "1962"
    elif mutate == "version":
        data["dictionary_version"] = 2
    elif mutate == "short":
        data["single_byte"] = data["single_byte"][:-1]
    elif mutate == "recorded":
        data["sha256"]["single_byte"] = "0" * 64
    return json.dumps(data)


@pytest.mark.parametrize("mutate", ["single", "double", "version", "short", "recorded"])
def test_tampered_tables_are_refused(mutate: str) -> None:
    with pytest.raises(TokenTableError):
        load_tables(_tampered(mutate))


def test_unreadable_tables_are_refused() -> None:
    with pytest.raises(TokenTableError):
        load_tables("not json")
    with pytest.raises(TokenTableError):
        load_tables("[]")


def test_untampered_package_data_loads() -> None:
    single, double = load_tables(read_package_data())
    assert single == tokens.SINGLE_BYTE and double == tokens.DOUBLE_BYTE
