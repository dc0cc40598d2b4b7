"""`evolink pair`: link one device from the terminal, by QR code or by pairing code.

    evolink pair --ws-url wss://web.whatsapp.com/ws/chat [--phone 15550001111] [--creds creds.json]

Against the sandbox: ``--ws-url ws://127.0.0.1:PORT/ws/chat --root <root_public_key hex>``. The raw QR
string is printed too (``QR: ...``) so it can be fed to the sandbox's ``/admin/phones/{p}/scan``.
Exit codes: 0 linked and logged in, 1 the link failed or timed out, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ssl
import sys
from typing import TextIO

from evolink.wa.config import DEFAULT_WS_URL, ConfigError, EngineConfig
from evolink.wa.creds import CredsError, FileCredsStore
from evolink.wa.engine import Engine
from evolink.wa.events import CloseEvent, LoggedOutEvent, OpenEvent, QrEvent
from evolink.wa.pair_code import PairingError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolink pair", description="Link one WhatsApp device from the terminal.")
    p.add_argument("--ws-url", default=DEFAULT_WS_URL, help="WebSocket URL (default: %(default)s)")
    p.add_argument("--phone", help="link with a pairing code for this number (international, digits)")
    p.add_argument("--creds", default="evolink-creds.json", help="creds file (default: %(default)s)")
    p.add_argument("--root", help="hex of the 32-byte certificate root (default: WhatsApp's)")
    p.add_argument("--proxy", help="HTTP/SOCKS proxy URL")
    p.add_argument("--cafile", help="trust this CA bundle for wss:// (e.g. the sandbox certificate)")
    p.add_argument("--insecure", action="store_true", help="do not verify the wss:// TLS certificate")
    p.add_argument("--push-name", help="push name sent at registration")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument("--no-render", action="store_true", help="print the QR string only, no terminal QR")
    return p


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.ws_url.startswith("wss://") or not (args.cafile or args.insecure):
        return None
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _render(qr: str) -> str:
    import segno

    buf = io.StringIO()
    segno.make(qr, error="l").terminal(out=buf, compact=True)
    return buf.getvalue()


async def run(args: argparse.Namespace, out: TextIO) -> int:
    overrides: dict[str, object] = {"ws_url": args.ws_url, "proxy": args.proxy, "push_name": args.push_name}
    if args.root:
        overrides["root_public_key"] = bytes.fromhex(args.root)
    config = EngineConfig(**overrides)  # type: ignore[arg-type]
    engine = Engine(config, FileCredsStore(args.creds), ssl_context=_ssl_context(args))
    events = engine.events()
    await engine.start()
    code_task: asyncio.Task[None] | None = None

    async def show_code(phone: str) -> None:
        try:
            ev = await engine.request_pairing_code(phone)
        except PairingError as exc:
            print(f"pairing code refused: {exc}", file=out, flush=True)
            await engine.close()
            return
        left = (ev.expires_at - engine.clock.now()).total_seconds()
        print(f"Pairing code: {ev.code[:4]}-{ev.code[4:]}  (enter it on the phone within {left:.0f} s: "
              "Linked devices > Link with phone number)", file=out, flush=True)

    try:
        async with asyncio.timeout(args.timeout):
            async for ev in events:
                if isinstance(ev, QrEvent):
                    if args.phone:
                        if code_task is None:
                            code_task = asyncio.create_task(show_code(args.phone))
                        continue
                    if not args.no_render:
                        print(_render(ev.qr), file=out)
                    print(f"QR: {ev.qr}", file=out, flush=True)
                elif isinstance(ev, OpenEvent):
                    print(f"linked: {ev.jid} (lid {ev.lid}); creds in {args.creds}", file=out, flush=True)
                    return 0
                elif isinstance(ev, LoggedOutEvent):
                    print(f"logged out: {ev.message}", file=out, flush=True)
                elif isinstance(ev, CloseEvent) and not ev.will_reconnect:
                    print(f"closed: {ev.reason.value} {ev.message}", file=out, flush=True)
                    return 1
    except TimeoutError:
        print(f"timed out after {args.timeout:g} s", file=out, flush=True)
    finally:
        if code_task is not None:
            code_task.cancel()
        await engine.close()
    return 1


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    stream = out or sys.stdout
    try:
        return asyncio.run(run(args, stream))
    except (ConfigError, CredsError, ValueError) as exc:
        print(f"evolink pair: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 1
