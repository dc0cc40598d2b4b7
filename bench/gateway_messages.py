"""Gateway messaging benchmark (issue 11): N instances × M messages each way through the Evolution API.

    .venv/bin/python bench/gateway_messages.py                   # 100 instances, 50 messages each way
    .venv/bin/python bench/gateway_messages.py --instances 10 --messages 20

Set-up: `evolink serve` in its own process (SQLite, webhooks to this process), the sandbox and the
simulated phones in this process. Each instance is linked by pairing code to its own phone and talks
with one peer phone.

Figures:
- sends/s: API `sendText` answers (201) per second of the send phase (``--concurrency`` requests in
  flight across all instances; each instance's sends are sequential);
- API → phone p50/p99: from the `sendText` call to the peer phone having decrypted the message;
- webhook p50/p99: from the phone's send to `MESSAGES_UPSERT` received by the webhook receiver, the
  phones sending open-loop at ``--rate`` messages/s in total (0: all at once, which measures the
  backlog rather than the latency);
- 5xx count and stuck sends (no answer within 60 s) must both be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from evolink.sandbox.server import Sandbox

KEY = "BENCH-KEY"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Receiver:
    """Loopback webhook receiver: time of arrival of each MESSAGES_UPSERT by message id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))) or b"null")
                if isinstance(body, dict) and body.get("event") == "messages.upsert":
                    self.arrived.setdefault(body["data"]["key"]["id"], time.perf_counter())
                    self.changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                del line
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def spawn_gateway(data: Path, sb: Sandbox, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "EVOLINK_DATA_DIR": str(data), "AUTHENTICATION_API_KEY": KEY, "LOG_LEVEL": "ERROR",
           "WA_WEBSOCKET_URL": sb.ws_url, "WA_ROOT_PUBLIC_KEY": sb.root_public_key, "CONNECT_WAIT_SECONDS": "60",
           "CLOCK_NTP_SERVERS": "127.0.0.1:9", "CLOCK_UPSTREAM_HTTP_URL": sb.admin_url + "/admin/clock"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--env-file", str(data / "none.env"), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    while b"gateway on" not in (line := await asyncio.wait_for(proc.stdout.readline(), 60)):
        if not line:
            raise RuntimeError("evolink serve exited early")
    return proc


async def wait_open(client: httpx.AsyncClient, name: str, within: float) -> None:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        resp = await client.get(f"/instance/connectionState/{name}")
        if resp.status_code == 200 and resp.json()["instance"]["state"] == "open":
            return
        await asyncio.sleep(0.2)  # another process: its HTTP API is the only signal
    raise TimeoutError(f"{name} did not open")


async def run(n: int, m: int, concurrency: int, rate: float) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="evolink-bench-"))
    receiver = Receiver()
    await receiver.start()
    decrypted: dict[str, float] = {}
    decrypted_changed = asyncio.Event()
    async with Sandbox.start(qr_first_ttl=60.0, link_timeout=30.0) as sb:
        react = sb._phone_react

        def timed_react(phone: str, node: Any) -> None:  # time at which the phone has decrypted it
            react(phone, node)
            mid = node.attrs.get("id") if getattr(node, "tag", "") == "message" else None
            if mid:
                decrypted.setdefault(mid, time.perf_counter())
                decrypted_changed.set()

        sb._phone_react = timed_react  # type: ignore[method-assign]
        own = [f"1555{i:07d}" for i in range(n)]
        peers = [f"1666{i:07d}" for i in range(n)]
        for p in own + peers:
            sb.create_phone(p)
        port = _port()
        proc = await spawn_gateway(data, sb, port)
        limits = httpx.Limits(max_connections=concurrency + 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"apikey": KEY}, timeout=60,
                                     limits=limits) as client:
            try:
                for _ in range(300):  # uvicorn binds just after printing its banner
                    try:
                        if (await client.get("/")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                for i in range(n):
                    resp = await client.post("/instance/create", json={
                        "instanceName": f"b{i}", "integration": "WHATSAPP-BAILEYS",
                        "webhook": {"url": f"http://127.0.0.1:{receiver.port}", "enabled": True,
                                    "events": ["MESSAGES_UPSERT"]}})
                    resp.raise_for_status()
                sem = asyncio.Semaphore(20)

                async def link(i: int) -> None:
                    async with sem:
                        body = (await client.get(f"/instance/connect/b{i}", params={"number": own[i]})).json()
                        await sb.link_code(own[i], body["pairingCode"])
                        await wait_open(client, f"b{i}", 120)

                await asyncio.gather(*(link(i) for i in range(n)))
                t_link = time.perf_counter() - t0

                statuses: dict[int, int] = {}
                api_lat: dict[str, float] = {}
                stuck = 0
                gate = asyncio.Semaphore(concurrency)

                async def sender(i: int) -> None:
                    nonlocal stuck
                    for k in range(m):
                        async with gate:
                            start = time.perf_counter()
                            try:
                                resp = await client.post(f"/message/sendText/b{i}",
                                                         json={"number": peers[i], "text": f"b{i}-{k}"})
                            except httpx.TimeoutException:
                                stuck += 1
                                continue
                            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                            if resp.status_code == 201:
                                api_lat[resp.json()["key"]["id"]] = start

                t1 = time.perf_counter()
                await asyncio.gather(*(sender(i) for i in range(n)))
                t_send = time.perf_counter() - t1

                sent_at: dict[str, float] = {}
                t2 = time.perf_counter()
                idx = 0
                for k in range(m):
                    for i in range(n):
                        if rate > 0:  # open-loop pacing of the phones (a schedule, not synchronisation)
                            await asyncio.sleep(max(0.0, t2 + idx / rate - time.perf_counter()))
                        idx += 1
                        res = sb.phone_send(peers[i], f"{own[i]}@s.whatsapp.net", f"p{i}-{k}")
                        sent_at[res["id"]] = time.perf_counter()
                    await asyncio.sleep(0)  # let the sandbox deliver between rounds
                deadline = time.perf_counter() + 120
                while not set(sent_at) <= set(receiver.arrived) and time.perf_counter() < deadline:
                    receiver.changed.clear()
                    try:
                        await asyncio.wait_for(receiver.changed.wait(), 5)
                    except TimeoutError:
                        pass
                t_recv = time.perf_counter() - t2
                deadline = time.perf_counter() + 60
                while not set(api_lat) <= set(decrypted) and time.perf_counter() < deadline:
                    decrypted_changed.clear()
                    try:
                        await asyncio.wait_for(decrypted_changed.wait(), 5)
                    except TimeoutError:
                        pass
            finally:
                proc.kill()
                await proc.wait()
    to_phone = [(decrypted[i] - s) * 1000 for i, s in api_lat.items() if i in decrypted]
    webhook = [(receiver.arrived[i] - s) * 1000 for i, s in sent_at.items() if i in receiver.arrived]
    return {
        "instances": n, "messages_each_way": m, "link_all_s": round(t_link, 1),
        "sends_ok": statuses.get(201, 0), "status_counts": statuses, "http_5xx": sum(
            v for k, v in statuses.items() if k >= 500), "stuck_sends": stuck,
        "sends_per_s": round(statuses.get(201, 0) / t_send, 1),
        "api_to_phone_ms_p50": round(pct(to_phone, 50), 1), "api_to_phone_ms_p99": round(pct(to_phone, 99), 1),
        "not_decrypted": len(api_lat) - len(to_phone),
        "received": len(webhook), "receive_phase_s": round(t_recv, 1), "receive_rate": rate,
        "webhook_ms_p50": round(pct(webhook, 50), 1), "webhook_ms_p99": round(pct(webhook, 99), 1),
        "webhook_missing": len(sent_at) - len(webhook),
        "mean_webhook_ms": round(statistics.fmean(webhook), 1) if webhook else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rate", type=float, default=40.0,
                    help="messages/s the phones send in the receive phase (0 = as fast as they can)")
    args = ap.parse_args()
    result = asyncio.run(run(args.instances, args.messages, args.concurrency, args.rate))
    print(json.dumps(result, indent=2))
    if result["http_5xx"] or result["stuck_sends"] or result["webhook_missing"] or result["not_decrypted"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
