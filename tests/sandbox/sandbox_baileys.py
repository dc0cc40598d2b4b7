"""Run ``baileys_driver.mjs`` (unmodified Baileys) as a subprocess and read its JSON event lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "baileys_driver.mjs"
BAILEYS = HERE.parent / "interop" / "node_modules" / "baileys" / "package.json"
NODE = shutil.which("node")


def available() -> bool:
    return NODE is not None and BAILEYS.exists()


class DriverError(AssertionError):
    pass


class BaileysDriver:
    def __init__(self, proc: asyncio.subprocess.Process, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv
        self.events: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._cursor = 0
        self._pump = asyncio.get_running_loop().create_task(self._read())
        self._stderr: list[str] = []
        self._err_pump = asyncio.get_running_loop().create_task(self._read_err())

    @classmethod
    async def start(cls, *, url: str, root_key: str, auth: Path, mode: str = "qr", phone: str | None = None,
                    qr_timeout_ms: int | None = None, keepalive_ms: int = 30_000, hold_ms: int = 0,
                    until: str = "close", init_queries: bool = True, restarts: int = 1) -> BaileysDriver:
        assert NODE is not None
        argv = [NODE, str(DRIVER), "--url", url, "--root-key", root_key, "--auth", str(auth), "--mode", mode,
                "--keepalive", str(keepalive_ms), "--hold-ms", str(hold_ms), "--until", until,
                "--restarts", str(restarts)]
        if phone:
            argv += ["--phone", phone]
        if qr_timeout_ms is not None:
            argv += ["--qr-timeout", str(qr_timeout_ms)]
        if not init_queries:
            argv.append("--no-init-queries")
        if os.environ.get("SANDBOX_BAILEYS_LOG"):
            argv += ["--log-level", os.environ["SANDBOX_BAILEYS_LOG"]]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=str(HERE),
        )
        return cls(proc, argv)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                await self._queue.put(None)
                return
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "stdout", "line": line.decode(errors="replace").rstrip()}
            self.events.append(event)
            await self._queue.put(event)

    async def _read_err(self) -> None:
        assert self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            self._stderr.append(line.decode(errors="replace").rstrip())
            del self._stderr[:-(20000 if os.environ.get("SANDBOX_BAILEYS_LOG") else 200)]

    def describe(self) -> str:
        tail = "\n".join(self._stderr[-(20000 if os.environ.get("SANDBOX_BAILEYS_LOG") else 30):])
        return f"events={json.dumps(self.events)[-3000:]}\nstderr tail:\n{tail}"

    async def expect(self, name: str, within: float = 20.0, **match: Any) -> dict[str, Any]:
        """Next event called ``name`` (with the given fields), skipping others; fail on fatal/exit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DriverError(f"no '{name}' {match} within {within}s\n{self.describe()}")
            try:
                event = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                continue
            if event is None:
                raise DriverError(f"driver ended before '{name}' {match}\n{self.describe()}")
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                return event
            if event["event"] == "fatal" or (event["event"] == "exit" and name != "exit"):
                raise DriverError(f"driver stopped ({event}) before '{name}' {match}\n{self.describe()}")

    async def command(self, cmd: str, **args: Any) -> None:
        """Write one JSON command to the driver's stdin (see baileys_driver.mjs)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()

    def seen(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    async def wait(self, within: float = 20.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), within)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
        for task in (self._pump, self._err_pump):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
