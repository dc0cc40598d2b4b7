"""``evolink sandbox``: run the sandbox server; prints one JSON line with its URLs and trust root."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from evolink.sandbox.config import SandboxConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolink sandbox", description="WhatsApp-like sandbox server with simulated phones")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="WebSocket port (0 = free port)")
    p.add_argument("--admin-port", type=int, default=0, help="admin HTTP port (0 = free port)")
    p.add_argument("--tls", action="store_true", help="serve wss:// with a self-signed certificate")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data", type=Path, help="data dir (SQLite state, root key, TLS cert)")
    where.add_argument("--memory", action="store_true", help="keep all state in memory (default without --data)")
    p.add_argument("--clock-offset", type=float, default=0.0, help="sandbox time = host time + SECONDS")
    p.add_argument("--qr-first-ttl", type=float, default=60.0)
    p.add_argument("--qr-next-ttl", type=float, default=20.0)
    p.add_argument("--qr-refs", type=int, default=6)
    p.add_argument("--pairing-code-ttl", type=float, default=180.0)
    p.add_argument("--idle-timeout", type=float, default=60.0)
    p.add_argument("--min-client-version", type=_version, default=None, metavar="X.Y.Z",
                   help="refuse older WA Web versions with failure 405 (as WhatsApp does a retired one)")
    p.add_argument("--log-level", default="WARNING")
    return p


def _version(text: str) -> tuple[int, int, int]:
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected X.Y.Z (e.g. 2.3000.1043857760), got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


async def _run(config: SandboxConfig) -> int:
    from evolink.sandbox.server import Sandbox

    async with Sandbox.start(config) as sandbox:
        print(json.dumps(sandbox.info()), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.qr_refs < 1 or min(args.qr_first_ttl, args.qr_next_ttl, args.pairing_code_ttl, args.idle_timeout) <= 0:
        print("evolink sandbox: timeouts must be > 0 and --qr-refs >= 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = SandboxConfig(
        host=args.host, port=args.port, admin_port=args.admin_port, tls=args.tls,
        data_dir=None if args.memory else args.data, clock_offset=args.clock_offset,
        qr_ref_count=args.qr_refs, qr_first_ttl=args.qr_first_ttl, qr_next_ttl=args.qr_next_ttl,
        pairing_code_ttl=args.pairing_code_ttl, idle_timeout=args.idle_timeout,
        min_client_version=args.min_client_version,
    )
    try:
        return asyncio.run(_run(config))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"evolink sandbox: cannot listen: {exc}", file=sys.stderr)
        return 1
