"""The server side of the Noise XX handshake, and what the client's payload asks for.

Intro ``WA 06 03`` or ``ED 00 01 <len3> <routing> WA 06 03`` (the frame reader strips it), then
client hello → server hello with the certificate chain → client finish carrying the
``ClientPayload``: a login when it has a ``username``, a registration when it has
``devicePairingData``. The whole exchange must finish within ``handshake_timeout``.
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


async def handshake(link: Link, server_static: KeyPair, cert_chain: bytes, within: float) -> Handshaken:
    """Run the responder side on ``link``; afterwards ``link.transport`` encrypts and decrypts."""
    deadline = time.monotonic() + within
    responder = noise.NoiseResponder(server_static)
    responder.read_client_hello(await link.recv_frame(deadline - time.monotonic()))
    await link.send_frame(responder.server_hello(cert_chain))
    finish = responder.read_client_finish(await link.recv_frame(deadline - time.monotonic()))
    link.transport = responder.transport()
    return Handshaken(finish.static, wa_pb2.ClientPayload.FromString(finish.payload))
