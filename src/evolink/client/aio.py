"""`AsyncEvolinkClient`: the same API and link flows as `EvolinkClient`, over `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from evolink.client import _http
from evolink.client.errors import GatewayUnreachable
from evolink.client.linking import Connect, Emit, Flow, Restart, Sleep, code_flow, qr_flow
from evolink.client.models import Backoff, ConnectAnswer, Linked, PairingCode, QrCode

OWNER_READS = 5  # reads of fetchInstances after `open`, until the owner JID is there
OWNER_READ_DELAY = 0.2


class AsyncEvolinkClient:
    """Async client. `url` is the gateway (e.g. http://localhost:8080), `api_key` the global key or
    an instance token. Use as a context manager, or call `close()`."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=_http.headers(api_key), timeout=timeout,
                                       transport=transport)
        self._sleep = sleep
        self._monotonic = monotonic

    async def __aenter__(self) -> AsyncEvolinkClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            resp = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise GatewayUnreachable(f"no answer from {self._http.base_url}: {exc}") from exc
        return _http.checked(resp)

    # --- Evolution's instance routes -----------------------------------------------------------
    async def create_instance(self, name: str, *, token: str | None = None, number: str | None = None,
                        **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"instanceName": name, "integration": "WHATSAPP-BAILEYS", **extra}
        if token is not None:
            body["token"] = token
        if number is not None:
            body["number"] = number
        result: dict[str, Any] = await self._call("POST", "/instance/create", json=body)
        return result

    async def connect(self, instance: str, number: str | None = None) -> ConnectAnswer:
        params = {"number": number} if number else None
        return ConnectAnswer.parse(await self._call("GET", _http.path("/instance/connect/{}", instance), params=params))

    async def connection_state(self, instance: str) -> str:
        body = await self._call("GET", _http.path("/instance/connectionState/{}", instance))
        return str(body["instance"]["state"])

    async def restart(self, instance: str) -> ConnectAnswer:
        return ConnectAnswer.parse(await self._call("POST", _http.path("/instance/restart/{}", instance)))

    async def logout(self, instance: str) -> None:
        await self._call("DELETE", _http.path("/instance/logout/{}", instance))

    async def delete(self, instance: str) -> None:
        await self._call("DELETE", _http.path("/instance/delete/{}", instance))

    async def fetch_instances(self, instance: str | None = None) -> list[dict[str, Any]]:
        params = {"instanceName": instance} if instance else None
        rows: list[dict[str, Any]] = await self._call("GET", "/instance/fetchInstances", params=params)
        return rows

    # --- linking with retries ------------------------------------------------------------------
    async def link_by_code(self, instance: str, number: str, *,
                           on_code: Callable[[PairingCode], None] | None = None, attempts: int = 3,
                           backoff: Backoff = Backoff(), poll: float = 1.0) -> Linked:
        """Link `instance` to the phone `number` by pairing code; `on_code` is called with each code to
        show (the first, and one new code per expiry). See `evolink.client.linking` for the rules."""
        flow = code_flow(number, attempts=attempts, backoff=backoff, poll=poll, now=self._monotonic)
        return await self._run(instance, flow, on_code, None)

    async def link_by_qr(self, instance: str, *, on_qr: Callable[[QrCode], None] | None = None, attempts: int = 3,
                         backoff: Backoff = Backoff(), poll: float = 1.0) -> Linked:
        """Link `instance` by QR; `on_qr` is called with each new QR (they rotate)."""
        return await self._run(instance, qr_flow(attempts=attempts, backoff=backoff, poll=poll), None, on_qr)

    async def _run(self, instance: str, flow: Flow, on_code: Callable[[PairingCode], None] | None,
                   on_qr: Callable[[QrCode], None] | None) -> Linked:
        started = self._monotonic()
        codes = 0
        result: Any = None
        try:
            while True:
                action = flow.send(result)
                result = None
                if isinstance(action, Connect):
                    result = await self.connect(instance, action.number)
                elif isinstance(action, Restart):
                    result = await self.restart(instance)
                elif isinstance(action, Sleep):
                    await self._sleep(action.seconds)
                elif isinstance(action, Emit):
                    codes = action.item.attempt
                    if isinstance(action.item, PairingCode) and on_code is not None:
                        on_code(action.item)
                    elif isinstance(action.item, QrCode) and on_qr is not None:
                        on_qr(action.item)
        except StopIteration:
            pass
        row: dict[str, Any] = {}
        for _ in range(OWNER_READS):  # the gateway answers `open` a moment before it stores the owner
            rows = await self.fetch_instances(instance)
            row = rows[0] if rows else {}
            if row.get("ownerJid"):
                break
            await self._sleep(OWNER_READ_DELAY)
        return Linked(instance, row.get("ownerJid"), row.get("profileName"), self._monotonic() - started, codes)
