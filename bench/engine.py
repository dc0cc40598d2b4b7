"""Engine benchmark: N linked evolink engines in one process against one sandbox (another process),
then the same for N Baileys 7.0.0-rc14 sockets in one Node process, printed side by side.

    .venv/bin/python bench/engine.py                 # N=200, 60 s idle window
    .venv/bin/python bench/engine.py --n 5000 --idle 120 --concurrency 100

Figures (same method on both sides):
- link: time to link all N by QR, ``--concurrency`` at a time (the sandbox phone scans each QR);
- loop lag p99: lateness of a 10 ms timer on the client's event loop during that link phase;
- login: all N restart from stored creds at once → time until every one is ``open``;
- RSS/conn: (RSS with N idle connections − RSS before the logins) / N, after a GC, measured in a
  fresh process (the stored creds are handed over from the linking process);
- keepalive CPU: client process CPU time / wall time over ``--idle`` seconds of idle links with the
  default keepalive (evolink: w:p every 20–30 s with jitter; Baileys: every 30 s), as % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from evolink.wa.config import EngineConfig
from evolink.wa.creds import Creds, MemoryCredsStore
from evolink.wa.engine import Engine
from evolink.wa.events import CloseEvent, EngineEvent, OpenEvent, QrEvent

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"rss_per_conn_bytes": 1 << 20, "keepalive_cpu_percent_at_5000": 10.0, "loop_lag_p99_ms": 50.0}


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class LagMonitor:
    """Lateness of a 10 ms timer: how long the loop was too busy to run it."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + 0.01
            await asyncio.sleep(0.01)
            self.samples.append(max(0.0, loop.time() - expected) * 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(len(s) * 0.99))] if s else 0.0


async def admin_post(admin_url: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """Minimal HTTP/1.1 POST over a fresh loopback connection.

    The benchmark drives the sandbox phone from inside the measured process; httpx costs a few ms of
    CPU per request, which would be charged to the engine's loop-lag figure, so this stays tiny.
    """
    hostport = admin_url.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, rest.decode(errors="replace")


class Tracked:
    """An engine plus futures for the events the benchmark waits on."""

    def __init__(self, config: EngineConfig, store: MemoryCredsStore) -> None:
        self.engine = Engine(config, store)
        self.store = store
        loop = asyncio.get_running_loop()
        self.qr: asyncio.Future[str] = loop.create_future()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closes = 0
        self.engine.subscribe(self._on)

    def _on(self, ev: EngineEvent) -> None:
        if isinstance(ev, QrEvent) and not self.qr.done():
            self.qr.set_result(ev.qr)
        elif isinstance(ev, OpenEvent) and not self.opened.done():
            self.opened.set_result(None)
        elif isinstance(ev, CloseEvent):
            self.closes += 1
            if not ev.will_reconnect and not self.opened.done():
                self.opened.set_exception(RuntimeError(f"closed: {ev.reason} {ev.message}"))


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen[str] | None, dict[str, str]]:
    if args.sandbox:
        info = json.loads(args.sandbox)
        return None, info
    proc = subprocess.Popen(
        [sys.executable, "-m", "evolink", "sandbox", "--memory", "--port", "0", "--idle-timeout", "120",
         "--log-level", "ERROR"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("sandbox did not start")
    pin(proc.pid, sandbox=True)
    return proc, json.loads(line)


def pin(pid: int, *, sandbox: bool) -> None:
    """On a multi-core host, the sandbox gets the last CPU and the clients the others, so the
    client figures (loop lag, CPU) are not disturbed by the sandbox competing for the same core."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return
    os.sched_setaffinity(pid, {cpus[-1]} if sandbox else set(cpus[:-1]))


async def create_phones(admin_url: str, phones: list[str]) -> None:
    async with httpx.AsyncClient(base_url=admin_url, timeout=30) as http:
        sem = asyncio.Semaphore(50)

        async def one(phone: str) -> None:
            async with sem:
                r = await http.post("/admin/phones", json={"phone": phone})
                if r.status_code not in (200, 201, 409):
                    raise RuntimeError(f"create phone {phone}: {r.status_code} {r.text}")

        await asyncio.gather(*(one(p) for p in phones))


async def evolink_link(info: dict[str, str], phones: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Link all phones, ``--concurrency`` at a time, sampling loop lag; returns figures + creds."""
    config = EngineConfig(ws_url=info["ws_url"], root_public_key=bytes.fromhex(info["root_public_key"]),
                          connect_timeout=60, query_timeout=60)
    stores = [MemoryCredsStore() for _ in phones]
    errors: list[str] = []
    sem = asyncio.Semaphore(args.concurrency)

    async def link(i: int) -> None:
        async with sem:
            t = Tracked(config, stores[i])
            try:
                await t.engine.start()
                qr = await asyncio.wait_for(t.qr, 60)
                status, text = await admin_post(info["admin_url"], f"/admin/phones/{phones[i]}/scan", {"qr": qr})
                if status != 200:
                    raise RuntimeError(f"scan {status} {text[:100]}")
                await asyncio.wait_for(t.opened, 60)
            except Exception as exc:
                errors.append(f"link {i}: {exc!r}")
            finally:
                await t.engine.close()

    lag = LagMonitor()
    lag.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(link(i) for i in range(len(phones))))
    link_seconds = time.perf_counter() - t0
    lag_p99 = lag.stop()
    creds = [c.to_dict() for s in stores if (c := await s.load()) is not None and c.registered]
    return {"n": len(phones), "linked": len(creds), "link_seconds": link_seconds, "loop_lag_p99_ms": lag_p99,
            "errors": errors[:5], "creds": creds}


async def evolink_login_worker(info: dict[str, str], creds_file: str, idle: float) -> dict[str, Any]:
    """Fresh process: log every stored device in at once, then idle; RSS and CPU of this process."""
    config = EngineConfig(ws_url=info["ws_url"], root_public_key=bytes.fromhex(info["root_public_key"]),
                          connect_timeout=60, query_timeout=60)
    saved = json.loads(await asyncio.to_thread(Path(creds_file).read_text))
    stores = [MemoryCredsStore(Creds.from_dict(d)) for d in saved]
    gc.collect()
    rss_before = rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    tracked = [Tracked(config, s) for s in stores]
    for t in tracked:
        await t.engine.start()
    results = await asyncio.gather(*(asyncio.wait_for(t.opened, 120) for t in tracked), return_exceptions=True)
    login_seconds = time.perf_counter() - t0
    login_cpu = time.process_time() - c0
    logged_in = sum(1 for r in results if not isinstance(r, BaseException))
    errors = [f"login: {r!r}" for r in results if isinstance(r, BaseException)][:5]
    gc.collect()
    rss_after = rss_bytes()
    closes0 = sum(t.closes for t in tracked)
    cpu0, w0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(idle)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - w0
    closes = sum(t.closes for t in tracked) - closes0
    await asyncio.gather(*(t.engine.close() for t in tracked))
    return {"logged_in": logged_in, "login_seconds": login_seconds,
            "login_cpu_ms_per_conn": login_cpu / max(logged_in, 1) * 1000,
            "rss_per_conn_bytes": (rss_after - rss_before) / logged_in if logged_in else None,
            "keepalive_cpu_percent": cpu / wall * 100, "closes_during_idle": closes, "errors": errors}


async def bench_evolink(info: dict[str, str], phones: list[str], args: argparse.Namespace,
                        workdir: Path) -> dict[str, Any]:
    linked = await evolink_link(info, phones, args)
    creds_file = workdir / "evolink-creds.json"
    creds_file.write_text(json.dumps(linked.pop("creds")))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--login-worker", str(creds_file), "--sandbox", json.dumps(info),
        "--idle", str(args.idle), stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    login = json.loads(lines[-1]) if lines else {"errors": [f"login worker exited {proc.returncode}"]}
    return {**linked, **login, "errors": linked["errors"] + login.get("errors", [])}


def bench_baileys(info: dict[str, str], phones: list[str], args: argparse.Namespace,
                  workdir: Path) -> dict[str, Any] | None:
    node = shutil.which("node")
    if node is None or not (ROOT / "tests/interop/node_modules/baileys").is_dir():
        print("baileys: node or tests/interop/node_modules/baileys missing; skipped", file=sys.stderr)
        return None
    cfg = {**info, "phones": phones, "concurrency": args.concurrency, "idle_seconds": args.idle,
           "auth_file": str(workdir / "baileys-auth.json")}
    cfg_file = workdir / "baileys-config.json"
    cfg_file.write_text(json.dumps(cfg))
    result: dict[str, Any] = {}
    for mode in ("link", "login"):
        proc = subprocess.run([node, "--expose-gc", str(ROOT / "bench/baileys_engine.mjs"), mode, str(cfg_file)],
                              capture_output=True, text=True, timeout=3600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"baileys {mode} failed ({proc.returncode}): {proc.stderr[-2000:]}", file=sys.stderr)
            return result or None
        part = json.loads(lines[-1])
        result = {**result, **part, "errors": result.get("errors", []) + part.get("errors", [])}
    return result


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "rss_per_conn_bytes":
        return f"{value / 1024:.0f} KiB"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def report(ours: dict[str, Any], theirs: dict[str, Any] | None, args: argparse.Namespace) -> None:
    rows = [
        ("linked", "linked"), ("logged in", "logged_in"), (f"link time (s, {args.concurrency} concurrent)", "link_seconds"),
        ("login time, all at once (s)", "login_seconds"),
        ("client CPU per login (ms)", "login_cpu_ms_per_conn"), ("RSS per idle connection", "rss_per_conn_bytes"),
        (f"keepalive CPU (% of one core, {args.idle:g} s idle)", "keepalive_cpu_percent"),
        ("loop lag p99 during linking (ms)", "loop_lag_p99_ms"), ("closes during idle", "closes_during_idle"),
    ]
    print(f"\nengine benchmark, N={ours['n']}, pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"{'':46} {'evolink':>14} {'Baileys rc14':>14}")
    for label, key in rows:
        print(f"{label:46} {_fmt(key, ours.get(key)):>14} {_fmt(key, (theirs or {}).get(key)):>14}")
    scaled = ours["keepalive_cpu_percent"] * 5000 / max(ours["n"], 1)
    print(f"\nevolink keepalive CPU extrapolated to 5,000 links: {scaled:.2f} % (target ≤ 10 %)")
    for side, res in (("evolink", ours), ("baileys", theirs)):
        if res and res.get("errors"):
            print(f"{side} errors (first 5): {res['errors']}")
    print(json.dumps({"evolink": ours, "baileys": theirs}))


async def main_async(args: argparse.Namespace) -> int:
    proc, info = start_sandbox(args)
    if proc is not None:
        pin(0, sandbox=False)  # children (login worker, node) inherit the client CPUs
    try:
        ours_phones = [str(15_550_000_000 + i) for i in range(args.n)]
        their_phones = [str(16_660_000_000 + i) for i in range(args.n)]
        await create_phones(info["admin_url"], ours_phones + ([] if args.no_baileys else their_phones))
        with tempfile.TemporaryDirectory(prefix="evolink-bench-") as tmp:
            ours = await bench_evolink(info, ours_phones, args, Path(tmp))
            theirs = (None if args.no_baileys
                      else await asyncio.to_thread(bench_baileys, info, their_phones, args, Path(tmp)))
        report(ours, theirs, args)
        return 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="engines (and Baileys sockets); up to 5000")
    p.add_argument("--concurrency", type=int, default=100, help="links in flight at once")
    p.add_argument("--idle", type=float, default=60.0, help="idle window for keepalive CPU (s); 120 = issue figure")
    p.add_argument("--no-baileys", action="store_true", help="skip the Baileys side")
    p.add_argument("--sandbox", help='use a running sandbox: its JSON line {"ws_url","admin_url","root_public_key"}')
    p.add_argument("--login-worker", help=argparse.SUPPRESS)  # internal: the fresh-process login phase
    args = p.parse_args(argv)
    if args.login_worker:
        print(json.dumps(asyncio.run(evolink_login_worker(json.loads(args.sandbox), args.login_worker, args.idle))))
        return 0
    if not 1 <= args.n <= 5000:
        p.error("--n must be in 1..5000")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
