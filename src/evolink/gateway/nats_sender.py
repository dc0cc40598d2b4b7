"""NATS sender (nats-py): Evolution's subjects, one publish per outbox row, confirmed by a flush.

Core NATS has no acknowledgement per message; a PING/PONG round trip after the publish (`flush`)
proves the server has read it, and only then is the row marked delivered. The client runs without
nats-py's own reconnect buffer (a message buffered there could be sent after the row was already
retried, i.e. twice, or lost with the process): when the connection drops, the next publish opens a
new one, at most once per `reconnect_gap` seconds. Like Evolution, a subject nobody subscribes to
drops the message at the server (use JetStream on the NATS side to keep them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from evolink.gateway.amqp_sender import redact_uri
from evolink.gateway.broker_gate import ConnectGate
from evolink.gateway.senders import BROKER_POLICY, SendResult
from evolink.gateway.webhooks import RetryPolicy

log = logging.getLogger("evolink.gateway.nats")


class NatsSender:
    def __init__(self, uri: str, *, policy: RetryPolicy = BROKER_POLICY, connect_timeout: float = 5.0,
                 flush_timeout: float = 10.0, reconnect_gap: float = 0.5) -> None:
        self.policy = policy
        self._uri = uri
        self._shown = redact_uri(uri)
        self._connect_timeout = connect_timeout
        self._flush_timeout = flush_timeout
        self._gate = ConnectGate("NATS", self._shown, log, reconnect_gap=reconnect_gap)
        self._client: NatsClient | None = None

    async def _ensure(self) -> NatsClient:
        nc = self._client
        if nc is not None and nc.is_connected:
            return nc
        async with self._gate.held():
            nc = self._client
            if nc is not None and nc.is_connected:
                return nc
            await self._drop()
            self._gate.check()

            async def quiet(_exc: Exception) -> None:  # nats-py logs every error itself otherwise
                return None

            try:
                # nats-py retries the first connect until a server's count passes max_reconnect_attempts
                # (0 = forever): 1 means two quick tries, then NoServersError.
                nc = await asyncio.wait_for(
                    nats.connect(self._uri, connect_timeout=max(1, int(self._connect_timeout)),
                                 allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
                                 error_cb=quiet, name="evolink"),
                    2 * self._connect_timeout + 1)
            except Exception as exc:
                raise self._gate.failed(exc) from None
            self._client = nc
            self._gate.connected()
            return nc

    async def _drop(self) -> None:
        nc, self._client = self._client, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 2.0)

    async def send(self, address: dict[str, str], event: str, payload: dict[str, Any],
                   message_id: str) -> SendResult:
        try:
            nc = await self._ensure()
        except ConnectionError as exc:
            return SendResult.unreachable(str(exc))
        try:
            await nc.publish(address["subject"], json.dumps(payload, ensure_ascii=False).encode(),
                             headers={"Nats-Msg-Id": message_id})
            await nc.flush(timeout=max(1, int(self._flush_timeout)))
        except asyncio.CancelledError:
            raise
        except nats.errors.BadSubjectError:
            return SendResult.refused(f"NATS refused {event}: subject {address.get('subject')!r} is not valid")
        except Exception as exc:
            with contextlib.suppress(ConnectionError):
                async with self._gate.held():
                    if self._client is nc:  # not one another lane has opened since
                        await self._drop()
            return SendResult.unreachable(f"NATS at {self._shown}: {type(exc).__name__}: {exc}")
        return SendResult.done()

    async def close(self) -> None:
        async with self._gate.lock:
            await self._drop()
