"""`evolink demo`: a scripted full link through an embedded sandbox, each step printed with its timing.

Everything runs in this process and on loopback: the sandbox, the gateway (SQLite in a temporary
directory, reached through its ASGI app) and a webhook receiver. The steps are exactly what an
Evolution client does: create → connect?number= → (the phone enters the code) → connection.update
`open` webhook → connectionState → logout → delete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class DemoFailed(Exception):
    pass


class _Hooks:
    """A tiny loopback HTTP receiver for the gateway's webhooks."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                length = 0
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(body))
                    changed, self.changed = self.changed, asyncio.Event()
                    changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def wait(self, event: str, state: str | None, within: float) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for e in self.events:
                    if e.get("event") == event and (state is None or (e.get("data") or {}).get("state") == state):
                        return e
                await self.changed.wait()

        return await asyncio.wait_for(find(), within)


class _Steps:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.n = 0

    async def run(self, title: str, aw: Awaitable[T]) -> T:
        self.n += 1
        start = time.perf_counter()
        print(f"[{self.n:>2}] {title} ...", end="", flush=True)
        try:
            result = await aw
        except Exception:
            print(" FAILED", flush=True)
            raise
        print(f" ok ({(time.perf_counter() - start) * 1000:.0f} ms)", flush=True)
        return result

    def note(self, text: str) -> None:
        print(f"     {text}", flush=True)


@contextlib.asynccontextmanager
async def _gateway(data_dir: Path, ws_url: str, root_hex: str) -> AsyncIterator[Any]:
    import httpx

    from evolink.api.apikey import ApiKey
    from evolink.api.app import create_app
    from evolink.api.settings import load_settings

    settings = load_settings(env_file=None, EVOLINK_DATA_DIR=data_dir, WA_WEBSOCKET_URL=ws_url,
                             WA_ROOT_PUBLIC_KEY=root_hex, AUTHENTICATION_API_KEY="demo-key",
                             DATABASE_PROVIDER="sqlite", WEBHOOK_RETRY_INITIAL_DELAY_SECONDS=0.2)
    app = create_app(settings, api_key=ApiKey("demo-key", "env"), clock_guard=None)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evolink",
                                     headers={"apikey": "demo-key"}, timeout=30) as client:
            yield client


async def _call(client: Any, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    resp = await client.request(method, path, **kwargs)
    if resp.status_code != expect:
        raise DemoFailed(f"{method} {path} answered {resp.status_code}: {resp.text}")
    return resp.json()


async def _demo(phone: str, instance: str) -> int:
    from evolink.sandbox.server import Sandbox
    from evolink.wa.pair_code import mask

    steps = _Steps()
    hooks = _Hooks()
    await hooks.start()
    try:
        with tempfile.TemporaryDirectory(prefix="evolink-demo-") as tmp:
            sb_cm = Sandbox.start()
            sandbox = await steps.run("start the sandbox (WhatsApp-like server, in memory)", sb_cm.__aenter__())
            try:
                steps.note(f"ws {sandbox.ws_url}, admin {sandbox.admin_url}")
                async def create_phone() -> Any:
                    return sandbox.create_phone(phone)

                await steps.run(f"sandbox: create phone {phone}", create_phone())
                gw_cm = _gateway(Path(tmp), sandbox.ws_url, sandbox.root_public_key)
                client = await steps.run("start the gateway (SQLite, webhook worker)", gw_cm.__aenter__())
                try:
                    body = {"instanceName": instance, "integration": "WHATSAPP-BAILEYS",
                            "webhook": {"url": hooks.url, "enabled": True, "events": []}}
                    created = await steps.run("POST /instance/create", _call(client, "POST", "/instance/create", 201,
                                                                            json=body))
                    steps.note(f"instanceId {created['instance']['instanceId']}")
                    first = await steps.run(f"GET /instance/connect/{instance}?number={phone}",
                                            _call(client, "GET", f"/instance/connect/{instance}", 200,
                                                  params={"number": phone}))
                    code = first.get("pairingCode")
                    if not code:
                        raise DemoFailed(f"no pairing code in the first response: {first}")
                    steps.note(f"pairing code {mask(code)} (server-confirmed, expires in "
                               f"{first.get('pairingCodeExpiresIn')} s)")
                    again = await steps.run("GET connect twice more (same code expected)", asyncio.gather(
                        *(_call(client, "GET", f"/instance/connect/{instance}", 200, params={"number": phone})
                          for _ in range(2))))
                    if any(a.get("pairingCode") != code for a in again):
                        raise DemoFailed("the pairing code changed between connect calls")
                    await steps.run("the phone enters the code (sandbox admin link-code)",
                                    sandbox.link_code(phone, code))
                    opened = await steps.run("webhook connection.update state=open",
                                             hooks.wait("connection.update", "open", 30))
                    steps.note(f"wuid {opened['data'].get('wuid')}, date_time {opened.get('date_time')}")
                    state = await steps.run("GET /instance/connectionState",
                                            _call(client, "GET", f"/instance/connectionState/{instance}", 200))
                    steps.note(json.dumps(state))
                    await steps.run("DELETE /instance/logout", _call(client, "DELETE", f"/instance/logout/{instance}", 200))
                    await steps.run("webhook logout.instance", hooks.wait("logout.instance", None, 15))
                    await steps.run("DELETE /instance/delete", _call(client, "DELETE", f"/instance/delete/{instance}", 200))
                finally:
                    await gw_cm.__aexit__(None, None, None)
            finally:
                await sb_cm.__aexit__(None, None, None)
    finally:
        await hooks.stop()
    print(f"linked and cleaned up in {time.perf_counter() - steps.t0:.2f} s", flush=True)
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evolink demo", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--phone", default="15550001111", help="simulated phone number (digits with country code)")
    p.add_argument("--instance", default="demo", help="instance name")
    args = p.parse_args(argv)
    if not args.phone.isdigit():
        print("evolink demo: --phone must be digits with the country code", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_demo(args.phone, args.instance))
    except DemoFailed as exc:
        print(f"evolink demo: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("evolink demo: timed out waiting for the step above", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
