"""Crypto known-answer checks derived independently of evolink.wire.crypto's own code paths."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
import xeddsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evolink.wire import crypto
from evolink.wire.errors import CryptoError, WireError

# ------------------------------------------------------------------- pure-Python Ed25519 (RFC 8032)
# Used only to make "copy the sign bit into sig[63]" signatures (the libsignal / curve25519-java
# convention) without going through xeddsa, so the verifier is checked against an independent signer.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P != 0:
        x = x * _I % _P
    if x & 1 != sign:
        x = _P - x
    return x


_BY = 4 * pow(5, _P - 2, _P) % _P
_B = (_recover_x(_BY, 0), _BY, 1, _recover_x(_BY, 0) * _BY % _P)


def _add(p: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    q = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p: tuple[int, int, int, int]) -> bytes:
    zi = pow(p[2], _P - 2, _P)
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _sign_copying_sign_bit(private: bytes, message: bytes) -> bytes:
    a = int.from_bytes(private, "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    big_a = _encode(_mul(a, _B))
    r = int.from_bytes(hashlib.sha512(os.urandom(64) + private + message).digest(), "little") % _L
    big_r = _encode(_mul(r, _B))
    k = int.from_bytes(hashlib.sha512(big_r + big_a + message).digest(), "little") % _L
    s = (r + k * a) % _L
    sig = bytearray(big_r + s.to_bytes(32, "little"))
    sig[63] |= big_a[31] & 0x80
    return bytes(sig)


# ------------------------------------------------------------------------------------ keys / DH


def test_keypair_and_dh_agree() -> None:
    a, b = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    assert len(a.public) == 32 and a.private[0] & 7 == 0 and a.private[31] & 0xC0 == 0x40
    assert crypto.dh(a.private, b.public) == crypto.dh(b.private, a.public)
    assert crypto.KeyPair.from_private(a.private) == a
    assert a.private.hex() not in repr(a)


def test_rfc7748_x25519_vector() -> None:
    alice = crypto.KeyPair.from_private(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    assert alice.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    bob_pub = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert crypto.dh(alice.private, bob_pub).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33])
def test_bad_key_lengths_raise_crypto_error(bad: bytes) -> None:
    kp = crypto.KeyPair.generate()
    with pytest.raises(CryptoError):
        crypto.KeyPair.from_private(bad)
    with pytest.raises(CryptoError):
        crypto.dh(kp.private, bad)
    with pytest.raises(CryptoError):
        crypto.sign(bad, b"m")


def test_low_order_point_is_refused() -> None:
    with pytest.raises(CryptoError):
        crypto.dh(crypto.KeyPair.generate().private, b"\x00" * 32)


# ---------------------------------------------------------------------------------- signatures


def test_200_forced_sign_signatures_verify_and_have_bit_clear() -> None:
    for i in range(200):
        kp = crypto.KeyPair.generate()
        msg = os.urandom(i % 97)
        sig = crypto.sign(kp.private, msg)
        assert len(sig) == 64 and sig[63] & 0x80 == 0
        assert crypto.verify(kp.public, msg, sig)
        assert not crypto.verify(kp.public, msg + b"x", sig)


def test_forced_signature_verifies_under_plain_ed25519_of_mapped_key() -> None:
    # The sign-bit-0 Edwards key from the Montgomery u must accept the signature as stock Ed25519.
    kp = crypto.KeyPair.generate()
    sig = crypto.sign(kp.private, b"hello")
    ed_pub = xeddsa.curve25519_pub_to_ed25519_pub(kp.public, False)
    Ed25519PublicKey.from_public_bytes(bytes(ed_pub)).verify(sig, b"hello")


def test_sign_refuses_non_bytes_message() -> None:
    with pytest.raises(CryptoError):
        crypto.sign(crypto.KeyPair.generate().private, "text")  # type: ignore[arg-type]


def test_flipped_sign_bit_fails() -> None:
    kp = crypto.KeyPair.generate()
    sig = bytearray(crypto.sign(kp.private, b"msg"))
    sig[63] ^= 0x80
    assert not crypto.verify(kp.public, b"msg", bytes(sig))


def test_verifier_honours_sig63_copy_convention_with_xeddsa_unforced_signer() -> None:
    set_bit = 0
    for _ in range(200):
        kp = crypto.KeyPair.generate()
        msg = os.urandom(40)
        sig = bytearray(xeddsa.ed25519_priv_sign(kp.private, msg, os.urandom(64)))
        ed_pub = bytes(xeddsa.priv_to_ed25519_pub(kp.private))
        sig[63] |= ed_pub[31] & 0x80
        set_bit += sig[63] >> 7
        assert crypto.verify(kp.public, msg, bytes(sig))
    assert 50 < set_bit < 150  # both halves of the convention were exercised


def test_verifier_honours_sig63_copy_convention_with_independent_signer() -> None:
    seen = set()
    for _ in range(32):
        kp = crypto.KeyPair.generate()
        sig = _sign_copying_sign_bit(kp.private, b"independent")
        seen.add(sig[63] >> 7)
        assert crypto.verify(kp.public, b"independent", sig)
        tampered = bytearray(sig)
        tampered[63] ^= 0x80
        assert not crypto.verify(kp.public, b"independent", bytes(tampered))
    assert seen == {0, 1}  # fails with probability 2**-31: both sign-bit values were exercised


@pytest.mark.parametrize(
    ("pub", "sig"),
    [(b"\x00" * 31, b"\x00" * 64), (b"\x00" * 32, b"\x00" * 63), (b"\xff" * 32, b"\xff" * 64), (None, None)],
)
def test_verify_never_raises(pub: bytes, sig: bytes) -> None:
    assert crypto.verify(pub, b"m", sig) is False


def test_signed_prekey_signature_covers_type_byte() -> None:
    ident, prekey = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    sig = crypto.signed_prekey_signature(ident.private, prekey.public)
    assert crypto.verify(ident.public, b"\x05" + prekey.public, sig)
    assert not crypto.verify(ident.public, prekey.public, sig)


# ---------------------------------------------------------------------------------------- HKDF


def test_hkdf_rfc5869_case_1() -> None:
    okm = crypto.hkdf(b"\x0b" * 22, 42, salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)))
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_rfc5869_case_3_no_salt_equals_zero_salt() -> None:
    expected = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert crypto.hkdf(b"\x0b" * 22, 42).hex() == expected
    assert crypto.hkdf(b"\x0b" * 22, 42, salt=b"\x00" * 32).hex() == expected


def test_hkdf_rejects_bad_length() -> None:
    for n in (0, -1, 255 * 32 + 1):
        with pytest.raises(CryptoError):
            crypto.hkdf(b"k", n)


# ------------------------------------------------------------------------------ pairing code


def _code_by_bitstring(b5: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in b5)
    return "".join("123456789ABCDEFGHJKLMNPQRSTVWXYZ"[int(bits[i : i + 5], 2)] for i in range(0, 40, 5))


def test_pairing_code_alphabet_and_bit_order() -> None:
    assert crypto.bytes_to_pairing_code(b"\x00" * 5) == "11111111"
    assert crypto.bytes_to_pairing_code(b"\xff" * 5) == "ZZZZZZZZ"
    assert crypto.bytes_to_pairing_code(b"\x80\x00\x00\x00\x00") == "H1111111"  # MSB first: 10000 -> 16
    for _ in range(200):
        b5 = os.urandom(5)
        assert crypto.bytes_to_pairing_code(b5) == _code_by_bitstring(b5)
    code = crypto.generate_pairing_code()
    assert len(code) == 8 and set(code) <= set(crypto.PAIRING_ALPHABET)
    with pytest.raises(CryptoError):
        crypto.bytes_to_pairing_code(b"\x00" * 4)


def test_pbkdf2_key_matches_hashlib() -> None:
    salt = bytes(range(32))
    assert crypto.derive_pairing_key("QA2ZZQBC", salt) == hashlib.pbkdf2_hmac(
        "sha256", b"QA2ZZQBC", salt, 131072, 32
    )
    assert crypto.derive_pairing_key("QA2Z-ZQBC", salt) == crypto.derive_pairing_key("QA2ZZQBC", salt)
    for bad in ("SHORT", "TOOLONGCODE", 12345678):
        with pytest.raises(CryptoError):
            crypto.derive_pairing_key(bad, salt)  # type: ignore[arg-type]


def test_wrap_is_aes_ctr_with_full_128_bit_counter() -> None:
    code, salt = "ABCD1234", os.urandom(32)
    iv = b"\x00" * 8 + b"\xff" * 8  # the second block's counter must carry into byte 7
    pub = crypto.KeyPair.generate().public
    wrapped = crypto.wrap_ephemeral(code, pub, salt=salt, iv=iv)
    assert len(wrapped) == 80 and wrapped[:32] == salt and wrapped[32:48] == iv
    key = hashlib.pbkdf2_hmac("sha256", code.encode(), salt, 131072, 32)
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    second = (int.from_bytes(iv, "big") + 1).to_bytes(16, "big")
    stream = ecb.update(iv + second) + ecb.finalize()
    assert bytes(a ^ b for a, b in zip(pub, stream, strict=True)) == wrapped[48:]
    assert crypto.unwrap_ephemeral(code, wrapped) == pub
    assert crypto.unwrap_ephemeral("ABCD1235", wrapped) != pub
    with pytest.raises(CryptoError):
        crypto.unwrap_ephemeral(code, wrapped[:79])


def test_key_bundle_round_trip_and_independent_decrypt() -> None:
    shared, bundle = os.urandom(32), os.urandom(96)
    wrapped = crypto.encrypt_key_bundle(shared, bundle)
    assert len(wrapped) == 156
    key = crypto.hkdf(shared, 32, salt=wrapped[:32], info=b"link_code_pairing_key_bundle_encryption_key")
    assert AESGCM(key).decrypt(wrapped[32:44], wrapped[44:], None) == bundle
    assert crypto.decrypt_key_bundle(shared, wrapped) == bundle
    tampered = bytearray(wrapped)
    tampered[100] ^= 1
    with pytest.raises(CryptoError):
        crypto.decrypt_key_bundle(shared, bytes(tampered))
    with pytest.raises(CryptoError):
        crypto.decrypt_key_bundle(os.urandom(32), wrapped)
    with pytest.raises(CryptoError):
        crypto.decrypt_key_bundle(shared, wrapped[:59])


def test_key_bundle_fixed_salt_and_nonce_are_used() -> None:
    shared, salt, nonce = os.urandom(32), os.urandom(32), os.urandom(12)
    a = crypto.encrypt_key_bundle(shared, b"x" * 96, salt=salt, nonce=nonce)
    assert a == crypto.encrypt_key_bundle(shared, b"x" * 96, salt=salt, nonce=nonce)
    assert a[:44] == salt + nonce


def test_adv_secret_is_hkdf_with_zero_salt() -> None:
    e, i, r = os.urandom(32), os.urandom(32), os.urandom(32)
    prk = hmac.new(b"\x00" * 32, e + i + r, hashlib.sha256).digest()
    expected = hmac.new(prk, b"adv_secret\x01", hashlib.sha256).digest()
    assert crypto.derive_adv_secret(e, i, r) == expected
    with pytest.raises(CryptoError):
        crypto.derive_adv_secret(e, i, r[:31])


def test_full_code_pairing_both_sides_agree() -> None:
    """Companion and phone derive the same bundle and ADV secret (wa-protocol.md §8.6)."""
    code = crypto.generate_pairing_code()
    comp_eph, comp_ident = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    phone_eph, phone_ident = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    # phone unwraps the companion's ephemeral; companion unwraps the phone's
    assert crypto.unwrap_ephemeral(code, crypto.wrap_ephemeral(code, comp_eph.public)) == comp_eph.public
    primary_eph = crypto.unwrap_ephemeral(code, crypto.wrap_ephemeral(code, phone_eph.public))
    eph_shared = crypto.dh(comp_eph.private, primary_eph)
    adv_random = os.urandom(32)
    bundle = comp_ident.public + phone_ident.public + adv_random
    wrapped = crypto.encrypt_key_bundle(eph_shared, bundle)
    got = crypto.decrypt_key_bundle(crypto.dh(phone_eph.private, comp_eph.public), wrapped)
    assert got == bundle
    companion = crypto.derive_adv_secret(
        eph_shared, crypto.dh(comp_ident.private, phone_ident.public), adv_random
    )
    phone = crypto.derive_adv_secret(
        crypto.dh(phone_eph.private, comp_eph.public), crypto.dh(phone_ident.private, got[:32]), got[64:]
    )
    assert companion == phone


# ----------------------------------------------------------------------------------------- ADV


def test_adv_hmac_and_prefixes() -> None:
    secret, details = os.urandom(32), os.urandom(50)
    assert crypto.adv_hmac(secret, details) == hmac.new(secret, details, hashlib.sha256).digest()
    assert (
        crypto.adv_hmac(secret, details, hosted=True)
        == hmac.new(secret, b"\x06\x05" + details, hashlib.sha256).digest()
    )
    mac = crypto.adv_hmac(secret, details)
    assert crypto.adv_hmac_valid(secret, details, mac)
    assert not crypto.adv_hmac_valid(secret, details + b"x", mac)
    assert (crypto.ADV_ACCOUNT_SIG_PREFIX, crypto.ADV_DEVICE_SIG_PREFIX) == (b"\x06\x00", b"\x06\x01")
    assert (crypto.ADV_HOSTED_ACCOUNT_SIG_PREFIX, crypto.ADV_HOSTED_DEVICE_SIG_PREFIX) == (
        b"\x06\x05",
        b"\x06\x06",
    )


def test_adv_signature_messages_sign_and_verify() -> None:
    primary, companion = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    details = os.urandom(20)
    acc_msg = crypto.account_signature_message(details, companion.public)
    assert acc_msg == b"\x06\x00" + details + companion.public
    assert crypto.account_signature_message(details, companion.public, hosted=True)[:2] == b"\x06\x05"
    acc_sig = crypto.sign(primary.private, acc_msg)
    assert crypto.verify(primary.public, acc_msg, acc_sig)
    dev_msg = crypto.device_signature_message(details, companion.public, primary.public)
    assert dev_msg == b"\x06\x01" + details + companion.public + primary.public
    assert crypto.verify(companion.public, dev_msg, crypto.sign(companion.private, dev_msg))
    with pytest.raises(WireError):
        crypto.device_signature_message(details, companion.public, b"short")
