"""`evolink link NAME [--number N] [--url URL] [--key KEY]`: link a phone from the terminal against a
running gateway, built on `evolink.client` (so it also works against Evolution's API).

With `--number` the pairing code is shown large, grouped as the phone shows it, with a live
countdown and progress bar and the steps on the phone; without it the QR is drawn in the terminal
(segno) and redrawn as it rotates. Codes are renewed as `link_by_code` decides (only when expired).
When every attempt ran out, or the gateway refused (clock, bad number …), the reason and what to do
are printed and Enter tries again. Exit codes: 0 linked, 1 gave up (end of input / Ctrl+C),
2 bad usage or key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import TextIO

from evolink.client.aio import AsyncEvolinkClient
from evolink.client.errors import (
    ApiError,
    EvolinkError,
    GatewayUnreachable,
    InstanceNotFound,
    InvalidNumber,
    LinkFailed,
    Unauthorized,
)
from evolink.client.models import Backoff, Linked, PairingCode, QrCode

BOLD, DIM, RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
BAR = 30


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolink link", description="Link a phone to an instance of a running gateway.")
    p.add_argument("name", help="instance name")
    p.add_argument("--number", help="phone number with country code: link by pairing code (else by QR)")
    p.add_argument("--url", default=os.environ.get("EVOLINK_URL", "http://localhost:8080"),
                   help="gateway URL (default EVOLINK_URL or http://localhost:8080)")
    p.add_argument("--key", default=os.environ.get("EVOLINK_API_KEY") or os.environ.get("AUTHENTICATION_API_KEY"),
                   help="global API key or the instance's token (default EVOLINK_API_KEY / AUTHENTICATION_API_KEY)")
    p.add_argument("--create", action="store_true", help="create the instance if it does not exist (global key)")
    p.add_argument("--attempts", type=int, default=3, help="codes (or QR series) per try (default 3)")
    p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--backoff", type=float, default=2.0, help=argparse.SUPPRESS)
    return p


class Screen:
    """What the user sees; `out` is a terminal (or a pipe: then no colours and no in-place redraw)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.code: PairingCode | None = None
        self.deadline = 0.0
        self.total = 0.0

    def _style(self, s: str, style: str) -> str:
        return f"{style}{s}{RESET}" if self.tty else s

    def say(self, text: str = "") -> None:
        self.out.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.out.flush()

    def show_code(self, code: PairingCode, number: str) -> None:
        if code.attempt > 1:
            self.say(self._style("The previous code expired before it was entered. Here is a new one.", BOLD))
        spaced = "  ".join(code.grouped)
        width = len(spaced) + 6
        self.say()
        self.say("  ┏" + "━" * width + "┓")
        self.say("  ┃   " + self._style(spaced, BOLD) + "   ┃")
        self.say("  ┗" + "━" * width + "┛")
        self.say(f"  pairing code: {code.grouped}")
        self.say()
        self.say(f"  On the phone with number +{number}:")
        self.say("   1. Open WhatsApp.")
        self.say("   2. Android: tap ⋮ → Linked devices.  iPhone: Settings → Linked devices.")
        self.say("   3. Tap Link a device, then Link with phone number instead.")
        self.say(f"   4. Type the code {code.grouped}.")
        self.say()
        self.code = code
        self.total = code.expires_in or 0.0
        self.deadline = time.monotonic() + self.total

    def tick(self) -> None:
        if self.code is None or not self.total:
            return
        left = max(0.0, self.deadline - time.monotonic())
        filled = round(BAR * left / self.total)
        secs = int(left + 0.999)
        line = f"  [{'#' * filled}{'.' * (BAR - filled)}] expires in {secs // 60}:{secs % 60:02d}"
        if left <= 0:
            line = "  [" + "." * BAR + "] expired; getting a new code…"
        if self.tty:
            self.out.write("\r\x1b[K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def show_qr(self, qr: QrCode) -> None:
        import segno

        self.say(f"QR {qr.count} (series {qr.attempt}): scan it with WhatsApp → Linked devices → Link a device")
        segno.make(qr.code, error="l").terminal(out=self.out, compact=True, border=2)
        self.out.flush()

    def linked(self, result: Linked) -> None:
        self.code = None
        who = result.number or result.owner_jid or "the phone"
        self.say(self._style(f"Linked as {who} in {result.seconds:.1f} s", BOLD))


async def _ticker(screen: Screen) -> None:
    while True:
        screen.tick()
        await asyncio.sleep(1.0)  # a display refresh, not synchronisation


async def _link_once(args: argparse.Namespace, gw: AsyncEvolinkClient, screen: Screen) -> Linked:
    backoff = Backoff(initial=args.backoff, maximum=max(args.backoff, 30.0))
    if args.number:
        ticker = asyncio.create_task(_ticker(screen))
        try:
            return await gw.link_by_code(args.name, args.number, attempts=args.attempts, backoff=backoff,
                                         poll=args.poll, on_code=lambda c: screen.show_code(c, args.number))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            screen.code = None
    return await gw.link_by_qr(args.name, attempts=args.attempts, backoff=backoff, poll=args.poll,
                               on_qr=screen.show_qr)


def _ask_retry(screen: Screen) -> bool:
    screen.say("Press Enter to try again (Ctrl+C to stop).")
    try:
        return sys.stdin.readline() != ""  # "" = end of input
    except KeyboardInterrupt:
        return False


async def _run(args: argparse.Namespace, screen: Screen) -> int:
    async with AsyncEvolinkClient(args.url, args.key, timeout=60) as gw:
        if args.create:
            try:
                await gw.connection_state(args.name)
            except InstanceNotFound:
                await gw.create_instance(args.name)
                screen.say(f"Created instance {args.name}.")
        while True:
            try:
                result = await _link_once(args, gw, screen)
            except (Unauthorized, InstanceNotFound, InvalidNumber) as exc:
                screen.say(f"evolink link: {exc}")
                screen.say(exc.hint)
                return 2
            except (LinkFailed, GatewayUnreachable, ApiError, EvolinkError) as exc:
                screen.say(f"Not linked: {exc}")
                screen.say(f"What to do: {exc.hint}")
                if not await asyncio.to_thread(_ask_retry, screen):
                    return 1
                continue
            screen.linked(result)
            return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not args.key:
        print("evolink link: no API key: pass --key or set EVOLINK_API_KEY / AUTHENTICATION_API_KEY", file=sys.stderr)
        return 2
    if args.attempts < 1:
        print("evolink link: --attempts must be >= 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, Screen(sys.stdout)))
    except KeyboardInterrupt:
        print("\nevolink link: stopped", file=sys.stderr)
        return 1
