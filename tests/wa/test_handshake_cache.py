"""The engine memoises verified certificate chains, but still checks their validity windows every time."""

from __future__ import annotations

import pytest

from evolink.wa.handshake import check_server_certificate
from evolink.wire.certs import CertChainInfo, build_cert_chain
from evolink.wire.crypto import KeyPair
from evolink.wire.errors import CertificateError

NOT_BEFORE, NOT_AFTER = 1_700_000_000, 1_700_086_400


def test_memoised_chain_is_still_refused_outside_its_window() -> None:
    root, inter, server = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    payload = build_cert_chain(root, inter, server.public, not_before=NOT_BEFORE, not_after=NOT_AFTER)

    def check(now: float) -> CertChainInfo:
        return check_server_certificate(payload, server_static=server.public, root_public_key=root.public,
                                        now=now, tolerance=5.0)

    first = check(NOT_BEFORE + 60)
    assert check(NOT_BEFORE + 120) is first  # served from the memo, not verified again
    for outside in (NOT_AFTER + 6, NOT_BEFORE - 6):
        with pytest.raises(CertificateError) as refused:
            check(outside)
        assert refused.value.check == "intermediate_validity"
    assert check(NOT_AFTER + 4) is first  # within the tolerance
