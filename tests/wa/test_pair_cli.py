"""`evolink pair` against the sandbox: the CLI runs in a thread, the test plays the phone."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from wa_helpers import PHONE

from evolink.sandbox.server import Sandbox
from evolink.wa.pair_cli import main


class LineSink:
    """A text stream the CLI thread writes to; lines are handed to the test's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._buf = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            *done, self._buf = self._buf.split("\n")
        for line in done:
            self.loop.call_soon_threadsafe(self.lines.put_nowait, line)
        return len(text)

    def flush(self) -> None:
        pass

    async def expect(self, prefix: str) -> str:
        async def scan() -> str:
            while True:
                line = await self.lines.get()
                if line.startswith(prefix):
                    return line
        return await asyncio.wait_for(scan(), 10)


async def test_pair_cli_by_code_then_login(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    async with Sandbox.start(link_timeout=5.0) as sb:
        sb.create_phone(PHONE)
        argv = ["--ws-url", sb.ws_url, "--root", sb.root_public_key, "--creds", str(creds),
                "--phone", PHONE, "--timeout", "20"]
        sink = LineSink(asyncio.get_running_loop())
        run = asyncio.create_task(asyncio.to_thread(main, argv, sink))  # type: ignore[arg-type]
        line = await sink.expect("Pairing code:")
        code = line.split()[2]
        assert len(code) == 9 and code[4] == "-"
        await sb.link_code(PHONE, code)
        assert await asyncio.wait_for(run, 20) == 0
        assert json.loads(creds.read_text())["me_jid"].startswith(PHONE + ":")

        # second run: stored creds, no QR, straight to linked
        sink2 = LineSink(asyncio.get_running_loop())
        again = asyncio.create_task(asyncio.to_thread(main, [*argv[:6], "--timeout", "20"], sink2))  # type: ignore[arg-type]
        assert (await sink2.expect("linked:")).startswith(f"linked: {PHONE}:")
        assert await asyncio.wait_for(again, 20) == 0


async def test_pair_cli_qr_string_and_bad_args(tmp_path: Path) -> None:
    async with Sandbox.start(link_timeout=5.0) as sb:
        sb.create_phone(PHONE)
        argv = ["--ws-url", sb.ws_url, "--root", sb.root_public_key, "--creds", str(tmp_path / "c.json"),
                "--timeout", "20"]
        sink = LineSink(asyncio.get_running_loop())
        run = asyncio.create_task(asyncio.to_thread(main, argv, sink))  # type: ignore[arg-type]
        qr = (await sink.expect("QR: "))[4:]
        await sb.scan(PHONE, qr)
        assert await asyncio.wait_for(run, 20) == 0


def test_pair_cli_bad_arguments_exit_2(tmp_path: Path) -> None:
    creds = str(tmp_path / "c.json")
    assert main(["--ws-url", "http://nope", "--creds", creds]) == 2
    assert main(["--root", "zz", "--creds", creds]) == 2
    assert main(["--timeout"]) == 2
