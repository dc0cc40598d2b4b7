"""Gateway messaging benchmark: I instances × M messages each way through a real `evolink serve`.

    .venv/bin/python bench/gateway_messages.py                       # 100 instances × 50 each way
    .venv/bin/python bench/gateway_messages.py --instances 10 --messages 10

Set-up: the sandbox (WhatsApp-like server and simulated phones) and a webhook receiver run in this
process; the gateway runs as its own `evolink serve` process on loopback. Each instance is linked to
phone A_i by pairing code and talks to its own simulated peer phone B_i.

Figures:
- sends/s: `POST /message/sendText` calls answered 201 per second of the send phase (every instance
  sends its M texts one after another, all instances at once);
- p99 API call → phone decrypted: from just before the HTTP call to the moment the peer phone has
  decrypted the text (the sandbox phone's receive hook, same process, monotonic clock);
- webhook p99 after receipt: B_i sends M texts to A_i; from the moment the sandbox accepted the
  phone's message to the moment `MESSAGES_UPSERT` for it reached the webhook receiver.
Checks: no 5xx, no send call without an answer within --call-timeout ("stuck"), every 201 send
decrypted by its phone and every phone message delivered by webhook within --settle seconds.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from evolink.sandbox.errors import AdminError
from evolink.sandbox.server import Sandbox

KEY = "BENCH-GLOBAL-KEY"


def p99(samples: list[float]) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


class Receiver:
    """A minimal HTTP/1.1 sink on 127.0.0.1: records (arrival time, JSON body) and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[tuple[float, Any]] = []
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.bodies.append((time.monotonic(), json.loads(body) if body else None))
                self.changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> bool:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        try:
            await asyncio.wait_for(loop(), within)
            return True
        except TimeoutError:
            return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def spawn_gateway(data_dir: Path, sb: Sandbox, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "EVOLINK_DATA_DIR": str(data_dir), "AUTHENTICATION_API_KEY": KEY,
           "WA_WEBSOCKET_URL": sb.ws_url, "WA_ROOT_PUBLIC_KEY": sb.root_public_key, "LOG_LEVEL": "ERROR",
           "CLOCK_NTP_SERVERS": "127.0.0.1:9", "CLOCK_UPSTREAM_HTTP_URL": sb.admin_url + "/admin/clock",
           "CONNECT_WAIT_SECONDS": "60"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--env-file", str(data_dir / "none.env"), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    while b"gateway on" not in (line := await asyncio.wait_for(proc.stdout.readline(), 60)):
        if not line:
            raise RuntimeError("evolink serve exited early")
    return proc


async def link_all(client: httpx.AsyncClient, sb: Sandbox, names: list[str], phones: list[str], url: str,
                   concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str, phone: str) -> None:
        async with gate:
            resp = await client.post("/instance/create", json={
                "instanceName": name, "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": url, "enabled": True, "events": ["MESSAGES_UPSERT"]}})
            resp.raise_for_status()
            for attempt in range(3):  # a loaded machine can miss the sandbox's link window: try again
                code = (await client.get(f"/instance/connect/{name}", params={"number": phone})).json()["pairingCode"]
                try:
                    await sb.link_code(phone, code)
                    break
                except AdminError:
                    if attempt == 2:
                        raise
                    await client.post(f"/instance/restart/{name}")
            for _ in range(600):
                state = (await client.get(f"/instance/connectionState/{name}")).json()["instance"]["state"]
                if state == "open":
                    return
                await asyncio.sleep(0.05)  # another process: its HTTP API is the only signal
            raise RuntimeError(f"{name} did not open")

    await asyncio.gather(*(one(n, p) for n, p in zip(names, phones, strict=True)))


async def run(args: argparse.Namespace) -> int:
    n, m = args.instances, args.messages
    own = [f"1555{100000 + i:06d}" for i in range(n)]
    peers = [f"1666{100000 + i:06d}" for i in range(n)]
    receiver = Receiver()
    await receiver.start()
    decrypted_at: dict[str, float] = {}
    decrypted = asyncio.Event()
    async with Sandbox.start(qr_first_ttl=60.0, qr_next_ttl=20.0, link_timeout=60.0) as sb:
        for p in own + peers:
            sb.create_phone(p)
        original = sb.phone_signal.receive

        def receive_hook(phone: str, node: Any) -> None:  # the peer phone decrypted it: stamp it
            original(phone, node)
            if node.tag == "message":
                decrypted_at.setdefault(node.attrs.get("id", ""), time.monotonic())
                decrypted.set()

        sb.phone_signal.receive = receive_hook  # type: ignore[method-assign]
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            proc = await spawn_gateway(Path(tmp), sb, port)
            limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"apikey": KEY},
                                             timeout=args.call_timeout, limits=limits) as client:
                    for _ in range(300):
                        try:
                            if (await client.get("/")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await asyncio.sleep(0.05)
                    names = [f"b{i}" for i in range(n)]
                    t_link = time.monotonic()
                    await link_all(client, sb, names, own, f"http://127.0.0.1:{receiver.port}/hook",
                                   args.concurrency)
                    link_s = time.monotonic() - t_link
                    result = await phases(client, sb, receiver, names, own, peers, m, decrypted_at, decrypted,
                                          args)
                    result["link_seconds"] = round(link_s, 2)
            finally:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
    await receiver.stop()
    report(result, n, m)
    return 0 if result["ok"] else 1


async def phases(client: httpx.AsyncClient, sb: Sandbox, receiver: Receiver, names: list[str], own: list[str],
                 peers: list[str], m: int, decrypted_at: dict[str, float], decrypted: asyncio.Event,
                 args: argparse.Namespace) -> dict[str, Any]:
    started: dict[str, float] = {}
    five_xx = stuck = refused = 0

    async def sender(name: str, peer: str) -> None:
        nonlocal five_xx, stuck, refused
        for k in range(m):
            t0 = time.monotonic()
            try:
                resp = await client.post(f"/message/sendText/{name}", json={"number": peer, "text": f"{name} {k}"})
            except httpx.TimeoutException:
                stuck += 1
                continue
            if resp.status_code >= 500:
                five_xx += 1
            elif resp.status_code == 201:
                started[resp.json()["key"]["id"]] = t0
            else:
                refused += 1

    t_send = time.monotonic()
    await asyncio.gather(*(sender(nm, pe) for nm, pe in zip(names, peers, strict=True)))
    send_s = time.monotonic() - t_send

    async def all_decrypted() -> None:
        while not set(started) <= set(decrypted_at):
            decrypted.clear()
            await decrypted.wait()
    try:
        await asyncio.wait_for(all_decrypted(), args.settle)
    except TimeoutError:
        pass
    api_to_phone = [decrypted_at[i] - t for i, t in started.items() if i in decrypted_at]
    undelivered = len(started) - len(api_to_phone)

    accepted: dict[str, float] = {}
    for k in range(m):  # every peer phone sends its k-th text, then the next round
        for own_phone, peer in zip(own, peers, strict=True):
            mid = sb.phone_send(peer, f"{own_phone}@s.whatsapp.net", f"back {k}")["id"]
            accepted[mid] = time.monotonic()
        await asyncio.sleep(0)

    def arrived() -> dict[str, float]:
        seen: dict[str, float] = {}
        for t, body in receiver.bodies:
            if isinstance(body, dict) and body.get("event") == "messages.upsert":
                seen.setdefault(body["data"]["key"]["id"], t)
        return seen

    await receiver.wait_for(lambda: set(accepted) <= set(arrived()), args.settle)
    seen = arrived()
    webhook = [seen[i] - t for i, t in accepted.items() if i in seen]
    lost_webhooks = len(accepted) - len(webhook)
    ok = five_xx == 0 and stuck == 0 and undelivered == 0 and lost_webhooks == 0
    return {"sends_ok": len(started), "sends_per_second": round(len(started) / send_s, 1) if send_s else None,
            "api_to_phone_p99_ms": round(1000 * (p99(api_to_phone) or 0), 1),
            "webhook_after_receipt_p99_ms": round(1000 * (p99(webhook) or 0), 1),
            "five_xx": five_xx, "stuck": stuck, "refused": refused, "undelivered_sends": undelivered,
            "received": len(accepted), "missing_webhooks": lost_webhooks, "send_seconds": round(send_s, 2), "ok": ok}


def report(r: dict[str, Any], n: int, m: int) -> None:
    print(f"\ngateway messaging benchmark: {n} instances x {m} messages each way, pid {os.getpid()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"  link all instances          {r['link_seconds']} s")
    print(f"  sends through the API       {r['sends_ok']} in {r['send_seconds']} s = {r['sends_per_second']} sends/s")
    print(f"  p99 API call -> decrypted   {r['api_to_phone_p99_ms']} ms")
    print(f"  webhook p99 after receipt   {r['webhook_after_receipt_p99_ms']} ms ({r['received']} received)")
    print(f"  5xx {r['five_xx']}, stuck sends {r['stuck']}, refused {r['refused']}, "
          f"undelivered sends {r['undelivered_sends']}, missing webhooks {r['missing_webhooks']}: "
          f"{'OK' if r['ok'] else 'FAILED'}")
    print(json.dumps(r))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=100)
    p.add_argument("--messages", type=int, default=50, help="messages each way per instance")
    p.add_argument("--concurrency", type=int, default=10, help="instances linked at once; HTTP pool size / 2")
    p.add_argument("--call-timeout", type=float, default=60.0, help="a send call without answer by then is stuck")
    p.add_argument("--settle", type=float, default=120.0, help="seconds to wait for deliveries after each phase")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
