"""Cluster benchmark: N `evolink serve` nodes on the local PostgreSQL, one sandbox (in this process).

    .venv/bin/python bench/cluster.py                      # 3 nodes x 20 instances, lease 15 s
    .venv/bin/python bench/cluster.py --per-node 2000 --link-concurrency 50   # the issue's target

Links `nodes x per-node` instances by pairing code through random nodes, lets them idle, then prints:
- RSS per instance per node: (node RSS with its instances open - its RSS before any) / instances it owns;
- API latency of `GET /instance/connectionState` through the owner vs through a non-owner (forwarded),
  p50/p99 over `--requests` calls;
- failover: SIGKILL the node owning the most instances; per moved instance, the time until a
  survivor answers `open` for it (p50/p99), with the lease time for reference.
A fresh PostgreSQL database is created and dropped (127.0.0.1:5432, user postgres, trust).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx

from evolink.sandbox.server import Sandbox

KEY = "BENCH-KEY"
PG = "postgresql://postgres@127.0.0.1:5432"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, index: int, proc: asyncio.subprocess.Process, port: int) -> None:
        self.node_id = f"bench{index}"
        self.proc = proc
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"apikey": KEY}, timeout=120)
        self.base_rss = 0


async def spawn(index: int, sb: Sandbox, db_url: str, lease: float, data: Path) -> Node:
    port = free_port()
    env = {**os.environ, "EVOLINK_DATA_DIR": str(data / f"n{index}"), "AUTHENTICATION_API_KEY": KEY,
           "EVOLINK_SECRET_KEY": "bench-cluster-secret-key-0123456789", "DATABASE_PROVIDER": "postgresql",
           "DATABASE_CONNECTION_URI": db_url, "CACHE_REDIS_URI": "redis://127.0.0.1:6379/0",
           "EVOLINK_NODE_ID": f"bench{index}", "EVOLINK_LEASE_SECONDS": str(lease), "LOG_LEVEL": "ERROR",
           "WA_WEBSOCKET_URL": sb.ws_url, "WA_ROOT_PUBLIC_KEY": sb.root_public_key, "CONNECT_WAIT_SECONDS": "60",
           "CLOCK_NTP_SERVERS": "127.0.0.1:9", "CLOCK_UPSTREAM_HTTP_URL": sb.admin_url + "/admin/clock"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "serve", "--host", "127.0.0.1", "--port", str(port), "--env-file",
        str(data / "none.env"), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    while b"gateway on" not in (line := await asyncio.wait_for(proc.stdout.readline(), 60)):
        if not line:
            raise RuntimeError("evolink serve exited early")
    node = Node(index, proc, port)
    while True:
        try:
            if (await node.client.get("/")).status_code == 200:
                break
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    node.base_rss = rss(proc.pid)
    return node


async def owners(db_url: str) -> dict[str, str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT i.name, l.owner FROM instance_leases l JOIN instances i "
                                "ON i.id = l.instance_id WHERE l.expires_at > now()")
    finally:
        await conn.close()
    return {r["name"]: r["owner"] for r in rows}


async def is_open(node: Node, name: str) -> bool:
    try:
        resp = await node.client.get(f"/instance/connectionState/{name}")
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and resp.json()["instance"]["state"] == "open"


async def link_all(nodes: list[Node], sb: Sandbox, names: list[str], phones: list[str], concurrency: int) -> float:
    rnd = random.Random(1)
    sem = asyncio.Semaphore(concurrency)

    async def one(name: str, phone: str) -> None:
        async with sem:
            sb.create_phone(phone)
            created = await rnd.choice(nodes).client.post("/instance/create", json={"instanceName": name})
            assert created.status_code == 201, created.text
            answer = (await rnd.choice(nodes).client.get(f"/instance/connect/{name}",
                                                         params={"number": phone})).json()
            await sb.link_code(phone, answer["pairingCode"])
            while not await is_open(nodes[0], name):  # noqa: ASYNC110 (other processes: poll their API)
                await asyncio.sleep(0.2)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(n, p) for n, p in zip(names, phones, strict=True)))
    return time.perf_counter() - t0


async def latency(node: Node, name: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = await node.client.get(f"/instance/connectionState/{name}")
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200
    return out


async def run(args: argparse.Namespace) -> None:
    db_name = f"evolink_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    await admin.close()
    db_url = f"{PG}/{db_name}"
    nodes: list[Node] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with Sandbox.start(qr_first_ttl=60.0, qr_next_ttl=20.0) as sb:
                nodes = [await spawn(i, sb, db_url, args.lease, Path(tmp)) for i in range(args.nodes)]
                total = args.nodes * args.per_node
                names = [f"b{i}" for i in range(total)]
                phones = [f"1556{i:07d}" for i in range(total)]
                took = await link_all(nodes, sb, names, phones, args.link_concurrency)
                print(f"linked {total} instances through random nodes in {took:.1f} s")
                await asyncio.sleep(args.idle)  # let the links settle (rebalancing, keepalives)
                own = await owners(db_url)
                for node in nodes:
                    mine = [n for n, o in own.items() if o == node.node_id]
                    grown = rss(node.proc.pid) - node.base_rss
                    per = grown / len(mine) / 1024 if mine else float("nan")
                    print(f"{node.node_id}: {len(mine)} instances, RSS {rss(node.proc.pid) / 2**20:.0f} MiB, "
                          f"{per:.0f} KiB per instance")
                sample = names[0]
                owner = next(n for n in nodes if n.node_id == own[sample])
                other = next(n for n in nodes if n is not owner)
                direct, forwarded = await latency(owner, sample, args.requests), await latency(other, sample,
                                                                                                 args.requests)
                print(f"connectionState via owner: p50 {pct(direct, .5):.1f} ms p99 {pct(direct, .99):.1f} ms; "
                      f"via non-owner (forwarded): p50 {pct(forwarded, .5):.1f} ms p99 {pct(forwarded, .99):.1f} ms")

                counts = {n.node_id: sum(1 for o in own.values() if o == n.node_id) for n in nodes}
                victim = max(nodes, key=lambda n: counts[n.node_id])
                moved = [n for n, o in own.items() if o == victim.node_id]
                survivor = next(n for n in nodes if n is not victim)
                victim.proc.send_signal(signal.SIGKILL)
                await victim.proc.wait()
                t0 = time.perf_counter()
                times: dict[str, float] = {}
                while len(times) < len(moved) and time.perf_counter() - t0 < 10 * args.lease + 120:
                    for name in [m for m in moved if m not in times]:
                        if await is_open(survivor, name):
                            times[name] = time.perf_counter() - t0
                    await asyncio.sleep(0.1)
                values = list(times.values())
                print(f"failover after SIGKILL of {victim.node_id} ({len(moved)} instances, lease {args.lease:g} s): "
                      f"p50 {pct(values, .5):.2f} s, p99 {pct(values, .99):.2f} s, "
                      f"max {max(values, default=float('nan')):.2f} s, open again {len(values)}/{len(moved)}")
                if values:
                    print(f"  mean {statistics.mean(values):.2f} s")
    finally:
        for node in nodes:
            if node.proc.returncode is None:
                node.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(node.proc.wait(), 60)
            await node.client.aclose()
        admin = await asyncpg.connect(f"{PG}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--per-node", type=int, default=20)
    p.add_argument("--lease", type=float, default=15.0)
    p.add_argument("--link-concurrency", type=int, default=10)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle links before measuring")
    args = p.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
