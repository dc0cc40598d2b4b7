"""Noise_XX_25519_AESGCM_SHA256 in WhatsApp's variant: initiator, responder and transport (§2).

Sans-I/O: each method takes or returns the serialized ``HandshakeMessage`` bytes that travel inside
one frame; framing and the intro header belong to :mod:`evolink.wire.frames`.

The one deviation from stock Noise is that the (empty) payload of message 1 is *not* mixed into
``h`` (no ``EncryptAndHash("")``); both Baileys and whatsmeow skip it, so we must too.

Every failure — bad protobuf, missing field, wrong key length, GCM tag mismatch, a call in the wrong
state — raises a :class:`~evolink.wire.errors.WireError` subclass (``NoiseError``/``ProtoError``),
and a failed handshake object refuses further use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from evolink.wire import proto
from evolink.wire.crypto import KeyPair, dh, hkdf
from evolink.wire.errors import NoiseError, WireError

PROTOCOL_NAME = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0"
# The connection header "WA" 6 3 is also the prologue; it equals frames.INTRO_HEADER (kept local so
# this module does not depend on the framing layer).
INTRO_HEADER = b"WA\x06\x03"
KEY_SIZE = 32
TAG_SIZE = 16
_MAX_NONCE = (1 << 32) - 1  # IV holds a 32-bit counter; never wrap it (that would reuse a nonce)


def _iv(counter: int) -> bytes:
    return b"\x00" * 8 + counter.to_bytes(4, "big")


def _bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise NoiseError(f"{name}: expected bytes, got {type(value).__name__}")
    return bytes(value)


class _SymmetricState:
    """h / ck / k / n of the Noise SymmetricState, AAD = h during the handshake."""

    def __init__(self, prologue: bytes) -> None:
        # The name is exactly 32 bytes, so it is used as-is rather than hashed.
        self.h = PROTOCOL_NAME
        self.ck = PROTOCOL_NAME
        self._aead = AESGCM(PROTOCOL_NAME)
        self.n = 0
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        out = hkdf(ikm, 64, salt=self.ck)
        self.ck = out[:32]
        self._aead = AESGCM(out[32:])
        self.n = 0

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self._aead.encrypt(_iv(self.n), plaintext, self.h)
        self.n += 1
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        try:
            plaintext = self._aead.decrypt(_iv(self.n), ciphertext, self.h)
        except InvalidTag as exc:
            raise NoiseError("handshake message failed authentication") from exc
        self.n += 1
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        out = hkdf(b"", 64, salt=self.ck)
        return out[:32], out[32:]


class Transport:
    """Post-handshake AES-256-GCM ciphers with independent send and receive counters (§2.3)."""

    def __init__(self, write_key: bytes, read_key: bytes) -> None:
        self._write = AESGCM(write_key)
        self._read = AESGCM(read_key)
        self._write_counter = 0
        self._read_counter = 0

    @property
    def write_counter(self) -> int:
        return self._write_counter

    @property
    def read_counter(self) -> int:
        return self._read_counter

    def encrypt(self, plaintext: bytes) -> bytes:
        plaintext = _bytes("plaintext", plaintext)
        if self._write_counter > _MAX_NONCE:
            raise NoiseError("transport write counter exhausted; reconnect")
        ciphertext = self._write.encrypt(_iv(self._write_counter), plaintext, None)
        self._write_counter += 1
        return ciphertext

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt one frame. The counter advances even on failure so later frames still line up."""
        if self._read_counter > _MAX_NONCE:
            raise NoiseError("transport read counter exhausted; reconnect")
        counter = self._read_counter
        self._read_counter += 1
        ciphertext = _bytes("ciphertext", ciphertext)
        if len(ciphertext) < TAG_SIZE:
            raise NoiseError(f"transport frame too short ({len(ciphertext)} bytes)")
        try:
            return self._read.decrypt(_iv(counter), ciphertext, None)
        except InvalidTag as exc:
            raise NoiseError(f"transport frame {counter} failed authentication") from exc


@dataclass(frozen=True)
class ServerHello:
    """What the initiator learns from message 2: the server static key and the cert payload."""

    static: bytes
    cert_payload: bytes


@dataclass(frozen=True)
class ClientFinish:
    """What the responder learns from message 3: the client static (noise) key and its payload."""

    static: bytes
    payload: bytes


def _key32(name: str, value: bytes) -> bytes:
    if len(value) != KEY_SIZE:
        raise NoiseError(f"{name} must be {KEY_SIZE} bytes, got {len(value)}")
    return value


def _dh(private: bytes, public: bytes) -> bytes:
    try:
        return dh(private, public)
    except WireError as exc:  # low-order point etc.; surface it as a handshake failure
        raise NoiseError(f"key agreement failed: {exc}") from exc


class _Handshake:
    """Shared state-machine plumbing: one step at a time, and a failed handshake stays failed."""

    def __init__(self, static: KeyPair, ephemeral: KeyPair | None, prologue: bytes) -> None:
        self._static = static
        self._ephemeral = ephemeral if ephemeral is not None else KeyPair.generate()
        self._ss = _SymmetricState(_bytes("prologue", prologue))
        self._state = "start"
        self._keys: tuple[bytes, bytes] | None = None  # (write, read) once split

    @property
    def handshake_hash(self) -> bytes:
        """Current ``h``; after the handshake it is the channel binding value (useful in vectors)."""
        return self._ss.h

    @property
    def ephemeral_public(self) -> bytes:
        return self._ephemeral.public

    def _expect(self, state: str, call: str) -> None:
        if self._state != state:
            raise NoiseError(f"{call} called in handshake state '{self._state}' (expected '{state}')")

    def transport(self) -> Transport:
        """The transport ciphers; available once, so two users can never share a nonce sequence."""
        self._expect("done", "transport()")
        if self._keys is None:  # unreachable: "done" is only entered after split()
            raise NoiseError("transport keys missing")
        self._state = "transport_taken"
        write, read = self._keys
        self._keys = None
        return Transport(write, read)


class NoiseInitiator(_Handshake):
    """Client side: ``client_hello`` → ``read_server_hello`` → ``client_finish`` → ``transport``."""

    def __init__(
        self, static: KeyPair, *, ephemeral: KeyPair | None = None, prologue: bytes = INTRO_HEADER
    ) -> None:
        super().__init__(static, ephemeral, prologue)
        self._re = b""

    def client_hello(self) -> bytes:
        self._expect("start", "client_hello()")
        # Deliberately no mix_hash of the empty payload here (WhatsApp variant).
        self._ss.mix_hash(self._ephemeral.public)
        self._state = "hello_sent"
        msg = proto.HandshakeMessage()
        msg.clientHello.ephemeral = self._ephemeral.public
        return msg.SerializeToString()

    def read_server_hello(self, data: bytes) -> ServerHello:
        self._expect("hello_sent", "read_server_hello()")
        self._state = "failed"  # until proven otherwise
        msg = proto.parse(proto.HandshakeMessage, data)
        if not msg.HasField("serverHello"):
            raise NoiseError("expected a serverHello")
        hello = msg.serverHello
        proto.require(hello, "ephemeral", "static", "payload")
        self._re = _key32("server ephemeral", hello.ephemeral)
        self._ss.mix_hash(self._re)
        self._ss.mix_key(_dh(self._ephemeral.private, self._re))
        server_static = _key32("server static", self._ss.decrypt_and_hash(hello.static))
        self._ss.mix_key(_dh(self._ephemeral.private, server_static))
        cert_payload = self._ss.decrypt_and_hash(hello.payload)
        self._state = "hello_read"
        return ServerHello(static=server_static, cert_payload=cert_payload)

    def client_finish(self, payload: bytes) -> bytes:
        self._expect("hello_read", "client_finish()")
        payload = _bytes("payload", payload)
        self._state = "failed"
        encrypted_static = self._ss.encrypt_and_hash(self._static.public)
        self._ss.mix_key(_dh(self._static.private, self._re))
        encrypted_payload = self._ss.encrypt_and_hash(payload)
        msg = proto.HandshakeMessage()
        msg.clientFinish.static = encrypted_static
        msg.clientFinish.payload = encrypted_payload
        self._keys = self._ss.split()  # initiator writes with the first half
        self._state = "done"
        return msg.SerializeToString()


class NoiseResponder(_Handshake):
    """Server side: ``read_client_hello`` → ``server_hello`` → ``read_client_finish`` → ``transport``."""

    def __init__(
        self, static: KeyPair, *, ephemeral: KeyPair | None = None, prologue: bytes = INTRO_HEADER
    ) -> None:
        super().__init__(static, ephemeral, prologue)
        self._re = b""

    def read_client_hello(self, data: bytes) -> bytes:
        """Consume message 1 and return the client's ephemeral public key."""
        self._expect("start", "read_client_hello()")
        self._state = "failed"
        msg = proto.parse(proto.HandshakeMessage, data)
        if not msg.HasField("clientHello"):
            raise NoiseError("expected a clientHello")
        proto.require(msg.clientHello, "ephemeral")
        self._re = _key32("client ephemeral", msg.clientHello.ephemeral)
        self._ss.mix_hash(self._re)
        self._state = "hello_read"
        return self._re

    def server_hello(self, cert_payload: bytes) -> bytes:
        self._expect("hello_read", "server_hello()")
        cert_payload = _bytes("cert payload", cert_payload)
        self._state = "failed"
        self._ss.mix_hash(self._ephemeral.public)
        self._ss.mix_key(_dh(self._ephemeral.private, self._re))
        encrypted_static = self._ss.encrypt_and_hash(self._static.public)
        self._ss.mix_key(_dh(self._static.private, self._re))
        encrypted_payload = self._ss.encrypt_and_hash(cert_payload)
        msg = proto.HandshakeMessage()
        msg.serverHello.ephemeral = self._ephemeral.public
        msg.serverHello.static = encrypted_static
        msg.serverHello.payload = encrypted_payload
        self._state = "hello_sent"
        return msg.SerializeToString()

    def read_client_finish(self, data: bytes) -> ClientFinish:
        self._expect("hello_sent", "read_client_finish()")
        self._state = "failed"
        msg = proto.parse(proto.HandshakeMessage, data)
        if not msg.HasField("clientFinish"):
            raise NoiseError("expected a clientFinish")
        finish = msg.clientFinish
        proto.require(finish, "static", "payload")
        client_static = _key32("client static", self._ss.decrypt_and_hash(finish.static))
        self._ss.mix_key(_dh(self._ephemeral.private, client_static))
        payload = self._ss.decrypt_and_hash(finish.payload)
        initiator_write, initiator_read = self._ss.split()
        self._keys = (initiator_read, initiator_write)  # the responder uses them the other way round
        self._state = "done"
        return ClientFinish(static=client_static, payload=payload)
