"""Pairing-code, link-code key exchange, ADV and QR derivations against Baileys' own code paths.

Vectors (tests/vectors/pairing.json) were computed with Baileys' exported helpers in the order
Baileys composes them (requestPairingCode/generatePairingKey, the link_code_companion_reg handler,
configureSuccessfulPairing, buildPairingQRData).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from evolink.wire import proto
from evolink.wire.binary import decode, encode
from evolink.wire.crypto import (
    ADV_ACCOUNT_SIG_PREFIX,
    ADV_DEVICE_SIG_PREFIX,
    ADV_HOSTED_ACCOUNT_SIG_PREFIX,
    ADV_SECRET_INFO,
    KEY_BUNDLE_INFO,
    PAIRING_ALPHABET,
    KeyPair,
    adv_hmac,
    bytes_to_pairing_code,
    decrypt_key_bundle,
    derive_adv_secret,
    derive_pairing_key,
    dh,
    encrypt_key_bundle,
    hkdf,
    unwrap_ephemeral,
    verify,
    wrap_ephemeral,
)
from evolink.wire.errors import CryptoError
from evolink.wire.qr import build_qr, parse_qr

from .vectorlib import load_vectors

V = load_vectors("pairing")
LC: dict[str, Any] = V["link_code"]


def _x(name: str) -> bytes:
    return bytes.fromhex(LC[name])


def _kp(name: str) -> KeyPair:
    kp = KeyPair.from_private(bytes.fromhex(LC[name]["private"]))
    assert kp.public.hex() == LC[name]["public"]
    return kp


def test_constants_match_baileys() -> None:
    assert PAIRING_ALPHABET == "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
    assert KEY_BUNDLE_INFO == b"link_code_pairing_key_bundle_encryption_key"
    assert ADV_SECRET_INFO == b"adv_secret"
    assert (ADV_ACCOUNT_SIG_PREFIX, ADV_DEVICE_SIG_PREFIX, ADV_HOSTED_ACCOUNT_SIG_PREFIX) == (
        b"\x06\x00",
        b"\x06\x01",
        b"\x06\x05",
    )


@pytest.mark.parametrize("v", V["codes"], ids=[c["input"] for c in V["codes"]])
def test_pairing_code_matches_bytes_to_crockford(v: dict[str, str]) -> None:
    assert bytes_to_pairing_code(bytes.fromhex(v["input"])) == v["code"]


def test_enough_code_vectors() -> None:
    assert len(V["codes"]) >= 20


def test_companion_wrap_matches_baileys() -> None:
    w = LC["companion_wrap"]
    salt, iv = bytes.fromhex(w["salt"]), bytes.fromhex(w["iv"])
    assert derive_pairing_key(LC["code"], salt).hex() == w["key"]
    pub = _kp("companion_ephemeral").public
    wrapped = wrap_ephemeral(LC["code"], pub, salt=salt, iv=iv)
    assert len(wrapped) == 80
    assert wrapped.hex() == w["wrapped"]
    assert unwrap_ephemeral(LC["code"], bytes.fromhex(w["wrapped"])) == pub


def test_unwrap_primary_ephemeral_from_baileys_side() -> None:
    w = LC["primary_wrap"]
    assert (
        unwrap_ephemeral(LC["code"], bytes.fromhex(w["wrapped"])).hex() == LC["primary_ephemeral"]["public"]
    )
    # the display form with a hyphen is the same KDF input
    hyphen = LC["code"][:4] + "-" + LC["code"][4:]
    assert unwrap_ephemeral(hyphen, bytes.fromhex(w["wrapped"])).hex() == LC["primary_ephemeral"]["public"]


@pytest.mark.parametrize("i", range(4))
def test_other_wraps_match_baileys(i: int) -> None:
    w = V["wraps"][i]
    salt, iv, pub = bytes.fromhex(w["salt"]), bytes.fromhex(w["iv"]), bytes.fromhex(w["public"])
    assert derive_pairing_key(w["code"], salt).hex() == w["key"]
    assert wrap_ephemeral(w["code"], pub, salt=salt, iv=iv).hex() == w["wrapped"]
    assert unwrap_ephemeral(w["code"], bytes.fromhex(w["wrapped"])) == pub


def test_companion_finish_derivations_match_baileys() -> None:
    comp_eph, comp_ident = _kp("companion_ephemeral"), _kp("companion_identity")
    prim_eph, prim_ident = _kp("primary_ephemeral"), _kp("primary_identity")
    eph_shared = dh(comp_eph.private, prim_eph.public)
    assert eph_shared.hex() == LC["ephemeral_shared"]
    assert dh(prim_eph.private, comp_eph.public) == eph_shared
    ident_shared = dh(comp_ident.private, prim_ident.public)
    assert ident_shared.hex() == LC["identity_shared"]

    bundle = comp_ident.public + prim_ident.public + _x("adv_random")
    assert bundle.hex() == LC["bundle"]
    assert hkdf(eph_shared, 32, salt=_x("bundle_salt"), info=KEY_BUNDLE_INFO).hex() == LC["bundle_key"]
    wrapped = encrypt_key_bundle(eph_shared, bundle, salt=_x("bundle_salt"), nonce=_x("bundle_nonce"))
    assert len(wrapped) == 156
    assert wrapped.hex() == LC["wrapped_bundle"]
    # the phone side opens Baileys' bundle
    assert decrypt_key_bundle(dh(prim_eph.private, comp_eph.public), _x("wrapped_bundle")) == bundle
    tampered = bytearray(_x("wrapped_bundle"))
    tampered[-1] ^= 1
    with pytest.raises(CryptoError):
        decrypt_key_bundle(eph_shared, bytes(tampered))

    assert derive_adv_secret(eph_shared, ident_shared, _x("adv_random")).hex() == LC["adv_secret"]


@pytest.mark.parametrize("i", range(9))
def test_hkdf_matches_baileys(i: int) -> None:
    v = V["hkdf"][i]
    salt = bytes.fromhex(v["salt"]) if v["salt"] is not None else None
    out = hkdf(bytes.fromhex(v["ikm"]), v["length"], salt=salt, info=v["info"].encode())
    assert out.hex() == v["okm"]


@pytest.mark.parametrize("i", range(12))
def test_adv_hmac_matches_baileys(i: int) -> None:
    v = V["adv_hmac"][i]
    mac = adv_hmac(bytes.fromhex(v["adv_secret"]), bytes.fromhex(v["details"]), hosted=v["hosted"])
    assert mac.hex() == v["hmac"]
    assert (
        adv_hmac(bytes.fromhex(v["adv_secret"]), bytes.fromhex(v["details"]), hosted=not v["hosted"]) != mac
    )


@pytest.mark.parametrize("case", V["adv"], ids=[c["name"] for c in V["adv"]])
def test_adv_identity_flow_matches_baileys(case: dict[str, Any]) -> None:
    """HMAC container, account signature and Baileys' pair-device-sign reply, checked by evolink."""
    container = proto.parse(proto.ADVSignedDeviceIdentityHMAC, bytes.fromhex(case["hmac_container"]))
    assert container.SerializeToString().hex() == case["hmac_container"]
    hosted = container.HasField("accountType") and container.accountType == proto.ADVEncryptionType.Value(
        "HOSTED"
    )
    assert hosted == case["hosted"]
    secret = bytes.fromhex(case["adv_secret"])
    assert adv_hmac(secret, container.details, hosted=hosted) == container.hmac
    assert container.hmac.hex() == case["hmac"]

    signed = proto.parse(proto.ADVSignedDeviceIdentity, container.details)
    identity = proto.parse(proto.ADVDeviceIdentity, signed.details)
    assert (identity.rawId, identity.timestamp, identity.keyIndex) == (
        case["device_identity"]["raw_id"],
        case["device_identity"]["timestamp"],
        case["device_identity"]["key_index"],
    )
    assert identity.SerializeToString().hex() == case["device_identity_details"]
    companion = bytes.fromhex(case["companion_identity_public"])
    prefix = ADV_HOSTED_ACCOUNT_SIG_PREFIX if hosted else ADV_ACCOUNT_SIG_PREFIX
    account_msg = prefix + signed.details + companion
    assert account_msg.hex() == case["account_signature_message"]
    assert verify(signed.accountSignatureKey, account_msg, signed.accountSignature)

    # Baileys' device signature (libsignal, [6,1] even when hosted) verifies with evolink
    device_msg = ADV_DEVICE_SIG_PREFIX + signed.details + companion + signed.accountSignatureKey
    assert device_msg.hex() == case["device_signature_message"]
    assert verify(companion, device_msg, bytes.fromhex(case["device_signature"]))

    # Baileys' reply: same identity without accountSignatureKey, plus its device signature
    reply_identity = proto.parse(proto.ADVSignedDeviceIdentity, bytes.fromhex(case["reply_device_identity"]))
    assert not reply_identity.HasField("accountSignatureKey")
    assert reply_identity.deviceSignature.hex() == case["device_signature"]
    assert reply_identity.SerializeToString().hex() == case["reply_device_identity"]

    # evolink decodes Baileys' stanzas and re-encodes them to the same bytes
    for key in ("pair_success_encoded", "reply_encoded"):
        raw = base64.b64decode(case[key])
        assert encode(decode(raw)) == raw
    reply = decode(base64.b64decode(case["reply_encoded"]))
    sign_node = reply.child("pair-device-sign")
    assert sign_node is not None
    dev = sign_node.child("device-identity")
    assert dev is not None and dev.attr("key-index") == case["reply_key_index"] == str(identity.keyIndex)
    assert dev.content == bytes.fromhex(case["reply_device_identity"])


@pytest.mark.parametrize("v", V["qr"], ids=[q["browser"][1] + "-" + q["browser"][0] for q in V["qr"]])
def test_qr_matches_build_pairing_qr_data(v: dict[str, Any]) -> None:
    platform_id = v["qr"].rsplit(",", 1)[1]
    built = build_qr(
        v["ref"],
        bytes.fromhex(v["noise_public"]),
        bytes.fromhex(v["identity_public"]),
        bytes.fromhex(v["adv_secret"]),
        platform_id,
    )
    assert built == v["qr"]
    parsed = parse_qr(v["qr"])
    assert parsed.ref == v["ref"]
    assert parsed.noise_public.hex() == v["noise_public"]
    assert parsed.identity_public.hex() == v["identity_public"]
    assert parsed.adv_secret.hex() == v["adv_secret"]
    assert parsed.platform_id == platform_id


def test_qr_platform_ids_follow_baileys_browser_mapping() -> None:
    ids = {tuple(q["browser"][:2]): q["qr"].rsplit(",", 1)[1] for q in V["qr"]}
    assert ids[("Mac OS", "Chrome")] == "1"
    assert ids[("Windows", "Desktop")] == "8"
    assert ids[("Mac OS", "Desktop")] == "7"
    assert ids[("Linux", "Lynx")] == "9"
