"""Noise XX handshake, client side, with whatsmeow-strength certificate checks.

The chain is verified in full by ``evolink.wire.certs.verify_cert_chain`` (root signature,
intermediate issuer serial 0, leaf issuer = intermediate serial, leaf key = server static,
validity windows) against the *injected* clock with a small tolerance; a failure raises
``CertificateError`` whose ``check`` names the failing step.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from evolink.clock.base import Clock
from evolink.wa.socket import FrameSocket
from evolink.wire.certs import CertChainInfo, check_chain_validity, verify_cert_chain
from evolink.wire.crypto import KeyPair
from evolink.wire.noise import NoiseInitiator, Transport

log = logging.getLogger("evolink.wa.handshake")


class HandshakeTimeout(Exception):
    """The server did not answer ClientHello in time."""


# Chains whose signatures and structure verified, keyed by (chain bytes, server static, root). The
# server presents the same chain on every connection, so thousands of logins verify it once; the
# validity windows are still checked against the clock on every handshake.
_VERIFIED: OrderedDict[tuple[bytes, bytes, bytes], CertChainInfo] = OrderedDict()
_VERIFIED_MAX = 64


def check_server_certificate(payload: bytes, *, server_static: bytes, root_public_key: bytes, now: float,
                             tolerance: float) -> CertChainInfo:
    """Full chain verification (``evolink.wire.certs``), memoising only the clock-independent part."""
    key = (payload, server_static, root_public_key)
    info = _VERIFIED.get(key)
    if info is None:
        info = verify_cert_chain(payload, server_static=server_static, root_public=root_public_key,
                                 now=now, tolerance=tolerance)
        _VERIFIED[key] = info
        if len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
        return info
    check_chain_validity(info, now=now, tolerance=tolerance)
    return info


async def perform_handshake(
    frames: FrameSocket,
    noise_key: KeyPair,
    payload: bytes,
    *,
    root_public_key: bytes,
    clock: Clock,
    tolerance: float,
    reply_within: float,
) -> tuple[Transport, CertChainInfo]:
    """Run the three Noise messages and return the transport. Raises CertificateError/NoiseError
    (WireError family) on a bad server, HandshakeTimeout, or SocketClosed."""
    initiator = NoiseInitiator(noise_key)
    await frames.send_frame(initiator.client_hello())
    try:
        reply = await asyncio.wait_for(frames.recv_frame(), reply_within)
    except TimeoutError:
        raise HandshakeTimeout(f"no ServerHello within {reply_within:g}s") from None
    hello = initiator.read_server_hello(reply)  # refuses a server static key that is not 32 bytes
    # ~1 ms on the loop on purpose (and once per distinct chain, see above): verification holds the
    # GIL, and a worker thread holding it makes every socket write of the loop wait for the GIL
    # switch interval (measured: worse loop lag).
    info = check_server_certificate(hello.cert_payload, server_static=hello.static,
                                    root_public_key=root_public_key, now=clock.time(), tolerance=tolerance)
    await frames.send_frame(initiator.client_finish(payload))
    return initiator.transport(), info
