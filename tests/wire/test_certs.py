"""Certificate chain: build, verify, and each named check failing when its condition is violated."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from evolink.wire import certs, crypto, proto
from evolink.wire.errors import CertificateError, NoiseError

NOW = 1_800_000_000
ROOT, INTER, SERVER = (crypto.KeyPair.generate() for _ in range(3))
Details = proto.CertChain.NoiseCertificate.Details


def _chain(**kw: int) -> bytes:
    args = {"not_before": NOW - 100, "not_after": NOW + 100} | kw
    return certs.build_cert_chain(ROOT, INTER, SERVER.public, **args)


def _verify(
    payload: bytes, now: float = NOW, tolerance: float = 0, static: bytes | None = None
) -> certs.CertChainInfo:
    return certs.verify_cert_chain(
        payload, server_static=static or SERVER.public, root_public=ROOT.public, now=now, tolerance=tolerance
    )


def _expect(check: str, payload: bytes, **kw: float) -> None:
    with pytest.raises(CertificateError) as info:
        _verify(payload, **kw)  # type: ignore[arg-type]
    assert info.value.check == check
    assert isinstance(info.value, NoiseError)


def _mutate(fn: Callable[[proto.CertChain], None]) -> bytes:
    chain = proto.parse(proto.CertChain, _chain())
    fn(chain)
    return chain.SerializeToString()


def _resign(which: str, signer: crypto.KeyPair, **fields: object) -> Callable[[proto.CertChain], None]:
    """Rewrite a certificate's details and sign them properly with ``signer``."""

    def fn(chain: proto.CertChain) -> None:
        cert = getattr(chain, which)
        d = proto.parse(Details, cert.details)
        for k, v in fields.items():
            if v is None:
                d.ClearField(k)
            else:
                setattr(d, k, v)
        cert.details = d.SerializeToString()
        cert.signature = crypto.sign(signer.private, cert.details)

    return fn


def test_valid_chain_verifies_and_reports_details() -> None:
    info = _verify(_chain(intermediate_serial=7, leaf_serial=9))
    assert info.intermediate.serial == 7 and info.intermediate.issuer_serial == 0
    assert info.leaf.issuer_serial == 7 and info.leaf.serial == 9
    assert info.leaf.key == SERVER.public and info.intermediate.key == INTER.public


def test_built_intermediate_carries_explicit_issuer_serial_zero() -> None:
    chain = proto.parse(proto.CertChain, _chain())
    assert b"\x10\x00" in chain.intermediate.details
    assert chain.intermediate.details.startswith(b"\x08\x01\x10\x00")


def test_check_names_cover_contract() -> None:
    assert set(certs.CHECKS) == {
        "present", "signature_length", "root_signature", "intermediate_issuer", "intermediate_key",
        "leaf_signature", "leaf_issuer", "leaf_key", "intermediate_validity", "leaf_validity",
    }  # fmt: skip


@pytest.mark.parametrize(
    "mutation",
    [
        lambda c: c.ClearField("leaf"),
        lambda c: c.ClearField("intermediate"),
        lambda c: c.leaf.ClearField("details"),
        lambda c: c.intermediate.ClearField("signature"),
    ],
)
def test_present(mutation: Callable[[proto.CertChain], None]) -> None:
    _expect("present", _mutate(mutation))


def test_present_on_garbage_payload() -> None:
    _expect("present", b"\xff\xff\xff")


@pytest.mark.parametrize("which", ["leaf", "intermediate"])
@pytest.mark.parametrize("size", [0, 63, 65])
def test_signature_length(which: str, size: int) -> None:
    _expect("signature_length", _mutate(lambda c: setattr(getattr(c, which), "signature", b"\x01" * size)))


def test_root_signature_forged() -> None:
    _expect("root_signature", _mutate(lambda c: setattr(c.intermediate, "signature", b"\x01" * 64)))


def test_root_signature_by_another_root() -> None:
    _expect("root_signature", _mutate(_resign("intermediate", crypto.KeyPair.generate(), serial=1)))


def test_root_signature_against_real_whatsapp_root() -> None:
    with pytest.raises(CertificateError) as info:
        certs.verify_cert_chain(
            _chain(), server_static=SERVER.public, root_public=certs.WA_CERT_PUBLIC_KEY, now=NOW
        )
    assert info.value.check == "root_signature"


@pytest.mark.parametrize("issuer", [None, 1])
def test_intermediate_issuer(issuer: int | None) -> None:
    # None: the field is absent (Baileys sees null and refuses); 1: wrong value.
    _expect("intermediate_issuer", _mutate(_resign("intermediate", ROOT, issuerSerial=issuer)))


def test_intermediate_key() -> None:
    _expect("intermediate_key", _mutate(_resign("intermediate", ROOT, key=b"k" * 31)))


def test_leaf_signature() -> None:
    _expect("leaf_signature", _mutate(_resign("leaf", crypto.KeyPair.generate(), serial=2)))
    _expect("leaf_signature", _mutate(lambda c: setattr(c.leaf, "details", c.leaf.details + b"\x28\x01")))


def test_leaf_issuer() -> None:
    _expect("leaf_issuer", _mutate(_resign("leaf", INTER, issuerSerial=5)))


def test_leaf_key() -> None:
    _expect("leaf_key", _chain(), static=crypto.KeyPair.generate().public)


def test_intermediate_validity_by_injected_clock() -> None:
    payload = _mutate(_resign("intermediate", ROOT, notBefore=NOW - 50, notAfter=NOW + 50))
    _verify(payload, now=NOW + 50)
    _expect("intermediate_validity", payload, now=NOW + 51)
    _expect("intermediate_validity", payload, now=NOW - 51)


def test_leaf_validity_by_injected_clock() -> None:
    payload = _mutate(_resign("leaf", INTER, notBefore=NOW - 20, notAfter=NOW + 20))
    _verify(payload, now=NOW - 20)
    _expect("leaf_validity", payload, now=NOW + 21)
    _expect("leaf_validity", payload, now=NOW - 21)


def test_tolerance_widens_both_edges() -> None:
    payload = _chain(not_before=NOW, not_after=NOW + 10)
    _expect("intermediate_validity", payload, now=NOW - 30)
    _verify(payload, now=NOW - 30, tolerance=30)
    _expect("intermediate_validity", payload, now=NOW - 31, tolerance=30)
    _verify(payload, now=NOW + 40, tolerance=30)
    _expect("intermediate_validity", payload, now=NOW + 41, tolerance=30)
    with pytest.raises(ValueError):
        _verify(payload, tolerance=-1)
