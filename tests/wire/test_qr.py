"""QR string builder/parser (wa-protocol.md §7.3)."""

from __future__ import annotations

import base64
import os

import pytest

from evolink.wire import qr
from evolink.wire.errors import WireError

NOISE, IDENT, ADV = os.urandom(32), os.urandom(32), os.urandom(32)
REF = "2@Xk9fP+q/abc=="
URLSAFE = base64.urlsafe_b64encode(b"\xfb" * 32).decode()  # contains "-" / "_"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def test_build_matches_documented_layout() -> None:
    s = qr.build_qr(REF.encode(), NOISE, IDENT, ADV)
    assert s == f"https://wa.me/settings/linked_devices#{REF},{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)},1"
    assert qr.build_qr(REF, NOISE, IDENT, ADV, platform_id="c").endswith(",c")
    assert qr.build_qr(REF, NOISE, IDENT, ADV, platform_id=None).count(",") == 3


def test_round_trip_with_and_without_prefix_and_platform() -> None:
    full = qr.build_qr(REF, NOISE, IDENT, ADV, platform_id="9")
    data = qr.parse_qr(full)
    assert (data.ref, data.noise_public, data.identity_public, data.adv_secret, data.platform_id) == (
        REF, NOISE, IDENT, ADV, "9",
    )  # fmt: skip
    evolution_form = f"{REF},{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)}"
    data = qr.parse_qr(evolution_form)
    assert data.platform_id is None and data.adv_secret == ADV
    assert qr.parse_qr(f"  {full}\n") == qr.parse_qr(full)


def test_adv_secret_not_in_repr() -> None:
    assert _b64(ADV) not in repr(qr.parse_qr(qr.build_qr(REF, NOISE, IDENT, ADV)))
    assert ADV.hex() not in repr(qr.parse_qr(qr.build_qr(REF, NOISE, IDENT, ADV)))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "only,three,fields",
        f"{REF},{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)},1,extra",
        f",{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)}",  # empty ref
        f"a b,{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)}",  # space in ref
        f"{REF},{_b64(NOISE).rstrip('=')},{_b64(IDENT)},{_b64(ADV)}",  # missing padding
        f"{REF},{URLSAFE},{_b64(IDENT)},{_b64(ADV)}",  # url-safe
        f"{REF},{_b64(NOISE[:31])},{_b64(IDENT)},{_b64(ADV)}",  # 31-byte key
        f"{REF},{_b64(NOISE)},{_b64(IDENT + b'x')},{_b64(ADV)}",  # 33-byte key
        f"{REF},{_b64(NOISE)},{_b64(IDENT)},not base64!",
        f"{REF},{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)},",  # empty platform
        f"{REF},{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)},10",  # two-char platform
        f"{REF},{_b64(NOISE)},{_b64(IDENT)},{_b64(ADV)},X",
        "x" * 5000,
    ],
)
def test_malformed_strings_raise_qr_error(bad: str) -> None:
    with pytest.raises(qr.QrError):
        qr.parse_qr(bad)


def test_non_canonical_base64_is_refused() -> None:
    good = _b64(NOISE)
    # flip unused low bits of the last significant char: decodes to the same bytes but is not canonical
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = good[-2]
    tweaked = good[:-2] + alphabet[alphabet.index(last) ^ 1] + "="
    assert base64.b64decode(tweaked) == NOISE
    with pytest.raises(qr.QrError):
        qr.parse_qr(f"{REF},{tweaked},{_b64(IDENT)},{_b64(ADV)}")


def test_builder_validates_input() -> None:
    for args in [
        (REF, NOISE[:31], IDENT, ADV),
        ("", NOISE, IDENT, ADV),
        ("a,b", NOISE, IDENT, ADV),
        (b"\xff", NOISE, IDENT, ADV),
    ]:
        with pytest.raises(WireError):
            qr.build_qr(*args)
    with pytest.raises(qr.QrError):
        qr.build_qr(REF, NOISE, IDENT, ADV, platform_id="xy")
    with pytest.raises(qr.QrError):
        qr.parse_qr(None)  # type: ignore[arg-type]
