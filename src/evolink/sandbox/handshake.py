"""The server side of the Noise XX handshake, and what the client's payload asks for.

Intro ``WA 06 03`` or ``ED 00 01 <len3> <routing> WA 06 03`` (the frame reader strips it), then
client hello → server hello with the certificate chain → client finish carrying the
``ClientPayload``: a login when it has a ``username``, a registration when it has
``devicePairingData``. The whole exchange must finish within ``handshake_timeout``.
A payload announcing a WA Web version older than ``min_client_version`` is answered
``<failure reason="405"/>`` (the real service's answer to a retired version).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from evolink.sandbox.transport import Link
from evolink.wire import noise
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import wa_pb2


@dataclass(frozen=True, slots=True)
class Handshaken:
    client_static: bytes
    payload: wa_pb2.ClientPayload


def client_version(payload: wa_pb2.ClientPayload) -> tuple[int, int, int]:
    v = payload.userAgent.appVersion
    return v.primary, v.secondary, v.tertiary


def version_refused(payload: wa_pb2.ClientPayload, minimum: tuple[int, int, int] | None) -> bool:
    """True when the client's WA Web version is older than ``minimum`` (None: every version is accepted)."""
    return minimum is not None and client_version(payload) < minimum


async def handshake(link: Link, server_static: KeyPair, cert_chain: bytes, within: float) -> Handshaken:
    """Run the responder side on ``link``; afterwards ``link.transport`` encrypts and decrypts."""
    deadline = time.monotonic() + within
    responder = noise.NoiseResponder(server_static)
    responder.read_client_hello(await link.recv_frame(deadline - time.monotonic()))
    await link.send_frame(responder.server_hello(cert_chain))
    finish = responder.read_client_finish(await link.recv_frame(deadline - time.monotonic()))
    link.transport = responder.transport()
    return Handshaken(finish.static, wa_pb2.ClientPayload.FromString(finish.payload))
