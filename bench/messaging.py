"""Messaging benchmark: N linked evolink engines exchange texts with sandbox phones, side by side
with N Baileys 7.0.0-rc14 sockets doing the same in one Node process, in the same run.

    .venv/bin/python bench/messaging.py                       # N=10, 200 msg/s, 15 s per direction
    .venv/bin/python bench/messaging.py --n 50 --rate 400 --seconds 20 --no-baileys

Set-up: one sandbox (a separate process, pinned to the last CPU), 2·N account phones and N peer
phones. Each side runs in its own worker process (evolink: this file with ``--worker``; Baileys:
bench/baileys_messaging.mjs) that links its N accounts by QR and then obeys two commands, so the
orchestrator's HTTP calls never count against a client's CPU:

- send: ``rate × seconds`` texts, account i → peer i round-robin, one *started* every 1/rate s (open
  loop: a slow client falls behind and its latency shows it). Latency = send call → the first
  delivery receipt for that id, which the peer phone sends right after it decrypted the message
  (an upper bound on "send call → phone decrypted": it includes the receipt's way back).
  CPU per sent message = worker CPU time over the phase / messages sent.
- recv: the orchestrator makes the peer phones send ``rate × seconds`` texts (sandbox admin API, at
  the same rate) while the worker counts decrypted arrivals; CPU per received message = worker
  CPU time over the phase / messages received.

The first message each way is a pkmsg (X3DH); a warm-up round (one message per account each way)
runs before the measured phases on both sides. Targets (issue 9): evolink CPU per message ≤ Baileys',
p99 < 100 ms at 200 messages/s on a 2-core machine. Figures move with the machine's load; run it on
an otherwise idle host for numbers worth comparing across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import Tracked, admin_post, create_phones, pin, start_sandbox  # bench/engine.py

from evolink.wa.config import EngineConfig
from evolink.wa.creds import MemoryCredsStore
from evolink.wa.events import EngineEvent, MessageEvent, ReceiptEvent, ReceiptType

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 100.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


# --- the evolink worker (a child process) -------------------------------------------------------------


class EvolinkWorker:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.config = EngineConfig(ws_url=cfg["ws_url"], root_public_key=bytes.fromhex(cfg["root_public_key"]),
                                   connect_timeout=60, query_timeout=60)
        self.tracked: list[Tracked] = []
        self.delivered: dict[str, asyncio.Future[float]] = {}
        self.received = 0
        self.received_changed = asyncio.Event()
        self.errors: list[str] = []

    def _on(self, ev: EngineEvent) -> None:
        if isinstance(ev, ReceiptEvent) and ev.type is ReceiptType.DELIVERED:
            now = time.perf_counter()
            for mid in ev.ids:
                fut = self.delivered.pop(mid, None)
                if fut is not None and not fut.done():
                    fut.set_result(now)
        elif isinstance(ev, MessageEvent) and not ev.from_me:
            self.received += 1
            self.received_changed.set()

    async def link(self) -> int:
        sem = asyncio.Semaphore(self.cfg["concurrency"])

        async def one(phone: str) -> Tracked | None:
            async with sem:
                t = Tracked(self.config, MemoryCredsStore())
                t.engine.subscribe(self._on)
                try:
                    await t.engine.start()
                    qr = await asyncio.wait_for(t.qr, 60)
                    status, text = await admin_post(self.cfg["admin_url"], f"/admin/phones/{phone}/scan", {"qr": qr})
                    if status != 200:
                        raise RuntimeError(f"scan {status} {text[:100]}")
                    await asyncio.wait_for(t.opened, 60)
                    return t
                except Exception as exc:
                    self.errors.append(f"link {phone}: {exc!r}")
                    await t.engine.close()
                    return None

        found = await asyncio.gather(*(one(p) for p in self.cfg["accounts"]))
        self.tracked = [t for t in found if t is not None]
        return len(self.tracked)

    async def send(self, rate: float, count: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        latencies: list[float] = []
        acks: list[float] = []  # send call -> server ack (send_text returns)
        failed = 0

        async def one(k: int) -> None:
            nonlocal failed
            i = k % len(self.tracked)
            engine = self.tracked[i].engine
            to = f"{self.cfg['peers'][i]}@s.whatsapp.net"
            start = time.perf_counter()
            # the id is fixed before the call so a receipt racing the server ack is not missed
            mid = f"3EB0{os.urandom(9).hex().upper()}"
            fut: asyncio.Future[float] = loop.create_future()
            self.delivered[mid] = fut
            try:
                await engine.send_text(to, f"e-{k}", message_id=mid)
                acks.append(time.perf_counter() - start)
                latencies.append((await asyncio.wait_for(fut, 30)) - start)
            except Exception as exc:
                failed += 1
                self.delivered.pop(mid, None)
                if len(self.errors) < 5:
                    self.errors.append(f"send: {exc!r}")

        c0, t0 = time.process_time(), time.perf_counter()
        tasks = []
        for k in range(count):
            wait = t0 + k / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)  # the pacing of an open-loop load, not synchronisation
            tasks.append(asyncio.create_task(one(k)))
        started_s = time.perf_counter() - t0
        await asyncio.gather(*tasks)
        return {"event": "sent", "sent": count - failed, "failed": failed, "cpu_s": time.process_time() - c0,
                "started_s": started_s,
                "wall_s": time.perf_counter() - t0, "latencies_ms": [x * 1000 for x in latencies],
                "ack_p50_ms": (pct(acks, 0.5) or 0) * 1000, "ack_p99_ms": (pct(acks, 0.99) or 0) * 1000,
                "errors": self.errors[:5]}

    async def recv(self, count: int, within: float) -> dict[str, Any]:
        start = self.received
        print(json.dumps({"event": "counting"}), flush=True)
        c0, t0 = time.process_time(), time.perf_counter()

        async def until_all() -> None:
            while self.received - start < count:
                self.received_changed.clear()
                await self.received_changed.wait()

        try:
            await asyncio.wait_for(until_all(), within)
        except TimeoutError:
            pass
        return {"event": "received", "received": self.received - start, "cpu_s": time.process_time() - c0,
                "wall_s": time.perf_counter() - t0}


async def worker_main(cfg: dict[str, Any]) -> None:
    w = EvolinkWorker(cfg)
    linked = await w.link()
    print(json.dumps({"event": "ready", "linked": linked, "errors": w.errors[:5]}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "send":
            print(json.dumps(await w.send(cmd["rate"], cmd["count"])), flush=True)
        elif cmd["cmd"] == "recv":
            print(json.dumps(await w.recv(cmd["count"], cmd["within"])), flush=True)
        else:
            break
    await asyncio.gather(*(t.engine.close() for t in w.tracked))


# --- the orchestrator ---------------------------------------------------------------------------------


class Worker:
    """A worker process speaking the JSON-lines protocol on stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, argv: list[str]) -> Worker:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, limit=64 << 20)
        return cls(proc)

    async def expect(self, event: str, within: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), within)
            if not line:
                raise RuntimeError(f"worker exited (waiting for {event!r})")
            if line.startswith(b"{"):
                msg: dict[str, Any] = json.loads(line)
                if msg.get("event") == event:
                    return msg

    async def command(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.command({"cmd": "quit"})
                await asyncio.wait_for(self.proc.wait(), 20)
            except (TimeoutError, ConnectionError):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def phones_send(admin_url: str, pairs: list[tuple[str, str]], rate: float, count: int) -> int:
    """Peer phone i → account i, ``count`` texts at ``rate``/s through the sandbox admin API."""
    ok = 0
    async with httpx.AsyncClient(base_url=admin_url, timeout=30,
                                 limits=httpx.Limits(max_connections=64)) as http:
        async def one(k: int) -> None:
            nonlocal ok
            peer, account = pairs[k % len(pairs)]
            r = await http.post(f"/admin/phones/{peer}/send", json={"to": f"{account}@s.whatsapp.net",
                                                                    "text": f"p-{k}"})
            ok += r.status_code in (200, 201)

        t0 = time.perf_counter()
        tasks = []
        for k in range(count):
            wait = t0 + k / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)
    return ok


def cpu_mark(pid: int | None) -> tuple[float, float]:
    """(process CPU seconds, wall time) of ``pid`` from /proc (Linux), to compare with a later mark."""
    if pid is None:
        return 0.0, time.perf_counter()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, time.perf_counter()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), time.perf_counter()


def cpu_percent_since(pid: int | None, mark: tuple[float, float]) -> float | None:
    if pid is None:
        return None
    cpu, wall = cpu_mark(pid)
    return (cpu - mark[0]) / (wall - mark[1]) * 100 if wall > mark[1] else None


async def run_side(name: str, argv: list[str], info: dict[str, str], accounts: list[str], peers: list[str],
                   args: argparse.Namespace, sandbox_pid: int | None) -> dict[str, Any]:
    count = int(args.rate * args.seconds)
    w = await Worker.start(argv)
    try:
        ready = await w.expect("ready", 300)
        out: dict[str, Any] = {"linked": ready["linked"], "errors": list(ready.get("errors") or [])}
        if ready["linked"] < len(accounts):
            print(f"{name}: only {ready['linked']} of {len(accounts)} linked: {ready.get('errors')}", file=sys.stderr)
            if not ready["linked"]:
                return out
        pairs = list(zip(peers, accounts, strict=True))[: ready["linked"]]
        # warm-up: the first (pkmsg) message each way per pair, not measured
        await w.command({"cmd": "send", "rate": 50, "count": len(pairs)})
        await w.expect("sent", 120)
        await w.command({"cmd": "recv", "count": len(pairs), "within": 60})
        await w.expect("counting", 30)
        await phones_send(info["admin_url"], pairs, 50, len(pairs))
        await w.expect("received", 90)
        # measured: send (each message waits at most 30 s for its receipt)
        mark = cpu_mark(sandbox_pid)
        await w.command({"cmd": "send", "rate": args.rate, "count": count})
        sent = await w.expect("sent", args.seconds * 10 + 60)
        sandbox_send = cpu_percent_since(sandbox_pid, mark)
        # measured: receive (the worker stops counting after `within`; a loaded sandbox may lag)
        within = args.seconds * 5 + 30
        await w.command({"cmd": "recv", "count": count, "within": within})
        await w.expect("counting", 30)
        mark = cpu_mark(sandbox_pid)
        await phones_send(info["admin_url"], pairs, args.rate, count)
        got = await w.expect("received", within + 30)
        sandbox_recv = cpu_percent_since(sandbox_pid, mark)
        lat = sent["latencies_ms"]
        out.update({
            "sent": sent["sent"], "send_failed": sent["failed"], "send_wall_s": sent["wall_s"],
            "send_rate": count / sent["started_s"] if sent.get("started_s") else None,
            "sandbox_cpu_percent_send": sandbox_send,
            "cpu_ms_per_sent": sent["cpu_s"] / max(sent["sent"], 1) * 1000,
            "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99), "max_ms": max(lat) if lat else None,
            "ack_p50_ms": sent.get("ack_p50_ms"), "ack_p99_ms": sent.get("ack_p99_ms"),
            "received": got["received"], "recv_wall_s": got["wall_s"],
            "recv_rate": got["received"] / got["wall_s"] if got["wall_s"] else None,
            "cpu_ms_per_received": got["cpu_s"] / max(got["received"], 1) * 1000,
            "sandbox_cpu_percent_recv": sandbox_recv,
        })
        out["errors"] += sent.get("errors") or []
        return out
    finally:
        await w.stop()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def report(ours: dict[str, Any], theirs: dict[str, Any] | None, args: argparse.Namespace) -> None:
    rows = [("linked", "linked"), ("sent (delivered)", "sent"), ("send failures", "send_failed"),
            ("send rate kept (msg/s started)", "send_rate"), ("CPU per sent message (ms)", "cpu_ms_per_sent"),
            ("latency p50, send -> phone decrypted (ms)", "p50_ms"), ("latency p99 (ms)", "p99_ms"),
            ("latency max (ms)", "max_ms"), ("sandbox CPU during sends (% of a core)", "sandbox_cpu_percent_send"),
            ("received", "received"), ("receive rate, end to end (msg/s)", "recv_rate"),
            ("CPU per received message (ms)", "cpu_ms_per_received"),
            ("sandbox CPU during receives (% of a core)", "sandbox_cpu_percent_recv")]
    print(f"\nmessaging benchmark, N={args.n}, {args.rate:g} msg/s for {args.seconds:g} s each way, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':44} {'evolink':>12} {'Baileys rc14':>14}")
    for label, key in rows:
        print(f"{label:44} {_fmt(ours.get(key)):>12} {_fmt((theirs or {}).get(key)):>14}")
    p99 = ours.get("p99_ms")
    verdict = [f"p99 {'<' if p99 is not None and p99 < TARGET_P99_MS else '>='} {TARGET_P99_MS:g} ms"]
    if theirs:
        for key, what in (("cpu_ms_per_sent", "sent"), ("cpu_ms_per_received", "received")):
            a, b = ours.get(key), theirs.get(key)
            if a is not None and b is not None:
                verdict.append(f"CPU/{what} {'<=' if a <= b else '>'} Baileys' ({a / b:.2f}x)")
    print("targets: " + "; ".join(verdict))
    for side, res in (("evolink", ours), ("baileys", theirs)):
        if res and res.get("errors"):
            print(f"{side} errors (first 5): {res['errors'][:5]}")


async def main_async(args: argparse.Namespace) -> int:
    proc, info = start_sandbox(args)
    if proc is not None and args.pin:
        pin(0, sandbox=False)  # this process and the workers share the other CPUs
    elif proc is not None:
        os.sched_setaffinity(proc.pid, os.sched_getaffinity(0))  # start_sandbox pinned it: undo
    try:
        ours_acc = [str(15_550_000_000 + i) for i in range(args.n)]
        theirs_acc = [str(16_660_000_000 + i) for i in range(args.n)]
        ours_peers = [str(17_770_000_000 + i) for i in range(args.n)]
        theirs_peers = [str(18_880_000_000 + i) for i in range(args.n)]
        await create_phones(info["admin_url"], ours_acc + theirs_acc + ours_peers + theirs_peers)
        base = {**info, "concurrency": args.concurrency}
        ours_cfg = {**base, "accounts": ours_acc, "peers": ours_peers}
        sandbox_pid = proc.pid if proc is not None else None
        ours = await run_side("evolink", [sys.executable, __file__, "--worker", json.dumps(ours_cfg)], info,
                              ours_acc, ours_peers, args, sandbox_pid)
        theirs = None
        node = shutil.which("node")
        if args.no_baileys:
            pass
        elif node is None or not (ROOT / "tests/interop/node_modules/baileys").is_dir():
            print("baileys: node or tests/interop/node_modules/baileys missing; skipped", file=sys.stderr)
        else:
            theirs_cfg = {**base, "accounts": theirs_acc, "peers": theirs_peers}
            theirs = await run_side("baileys", [node, str(ROOT / "bench/baileys_messaging.mjs"), json.dumps(theirs_cfg)],
                                    info, theirs_acc, theirs_peers, args, sandbox_pid)
        report(ours, theirs, args)
        if args.json:
            print(json.dumps({"evolink": ours, "baileys": theirs}))
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10, help="engines (and Baileys sockets)")
    p.add_argument("--rate", type=float, default=200.0, help="messages per second, all engines together")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each measured phase")
    p.add_argument("--concurrency", type=int, default=20, help="links in flight at once")
    p.add_argument("--no-baileys", action="store_true", help="skip the Baileys side")
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    p.add_argument("--pin", action="store_true",
                   help="sandbox on the last CPU, clients on the others (as bench/engine.py; the sandbox's "
                        "phones do all the peer-side Signal work, so on 2 cores this caps the rate)")
    p.add_argument("--sandbox", help='use a running sandbox: its JSON line {"ws_url","admin_url","root_public_key"}')
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the evolink worker process
    args = p.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(json.loads(args.worker)))
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
