"""One error family for everything the wire layer refuses.

Callers (engine, sandbox) catch ``WireError`` and close the connection cleanly; the subclasses say
which layer refused the input, and ``str(err)`` says why.
"""

from __future__ import annotations


class WireError(Exception):
    """Base of every error raised on bad, truncated, oversized or adversarial wire input."""


class DecodeError(WireError):
    """A binary node (WABinary) could not be decoded."""


class EncodeError(WireError):
    """A node or value cannot be represented on the wire."""


class FrameError(WireError):
    """Bad intro header, oversized frame, or a frame stream that cannot be parsed."""


class NoiseError(WireError):
    """The Noise handshake or a transport frame failed (bad message, tag mismatch, wrong state)."""


class ProtoError(WireError):
    """A protobuf message could not be parsed or lacks a required field."""


class CryptoError(WireError):
    """Bad key material or a failed cryptographic check (wrong length, bad MAC, failed unwrap)."""


class CertificateError(NoiseError):
    """The server certificate chain failed a check; ``check`` names which one."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"certificate check '{check}' failed: {message}")
        self.check = check
