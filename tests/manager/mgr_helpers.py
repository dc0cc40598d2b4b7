"""A gateway on a real loopback port (uvicorn), for streaming (SSE) clients, browsers and CLIs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from gw_helpers import GLOBAL_KEY

from evolink.api.apikey import ApiKey
from evolink.api.app import create_app
from evolink.api.settings import Settings
from evolink.clock.sntp import NtpPacket, decode_packet, encode_packet, unix_to_ntp


@contextlib.asynccontextmanager
async def served(settings: Settings, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
    """(base URL, app) of the gateway served by uvicorn on 127.0.0.1, port chosen by the kernel."""
    kwargs.setdefault("clock_guard", None)
    kwargs.setdefault("api_key", ApiKey(GLOBAL_KEY, "env"))
    app = create_app(settings, **kwargs)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # uvicorn exposes no readiness event
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class SseReader:
    """Reads `data:` events of one open text/event-stream response, with bounded waits."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.named: list[tuple[str, Any]] = []

    async def next_event(self, within: float = 10.0) -> tuple[str, Any]:
        async def read() -> tuple[str, Any]:
            name, data = "message", None
            async for line in self._lines:
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                elif line == "" and data is not None:
                    return name, data
            raise EOFError("stream ended")

        event = await asyncio.wait_for(read(), within)
        self.named.append(event)
        return event

    async def until(self, predicate: Any, within: float = 10.0) -> Any:
        async def loop() -> Any:
            while True:
                name, data = await self.next_event(within)
                if predicate(name, data):
                    return data

        return await asyncio.wait_for(loop(), within)


class ShiftedSntp(asyncio.DatagramProtocol):
    """A stratum-1 SNTP responder telling this process's time plus `shift` seconds (changeable at run
    time): three of them make an NTP majority that says the host clock is off by `-shift`."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.shift = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        received = time.time() + self.shift
        request = decode_packet(data)
        reply = NtpPacket(0, 4, 4, 1, 4, -20, 0.0, 0.0001, b"GPS\0", unix_to_ntp(received - 1),
                          request.transmit_ts, unix_to_ntp(received), unix_to_ntp(time.time() + self.shift))
        self.transport.sendto(encode_packet(reply), addr)


@contextlib.asynccontextmanager
async def shifted_sntp(count: int = 3) -> AsyncIterator[tuple[list[ShiftedSntp], str]]:
    """(responders, CLOCK_NTP_SERVERS value) on 127.0.0.1."""
    loop = asyncio.get_running_loop()
    started = [await loop.create_datagram_endpoint(ShiftedSntp, local_addr=("127.0.0.1", 0)) for _ in range(count)]
    try:
        servers = ",".join(f"127.0.0.1:{t.get_extra_info('sockname')[1]}" for t, _ in started)
        yield [p for _, p in started], servers
    finally:
        for transport, _ in started:
            transport.close()


@dataclass
class ServeProcess:
    """`evolink serve --sandbox` as a child process: its URL, sandbox admin URL and stderr."""

    proc: asyncio.subprocess.Process
    url: str
    admin_url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve_sandbox(env: dict[str, str], work: Path, *args: str,
                        start_within: float = 40.0) -> AsyncIterator[ServeProcess]:
    port = free_port()
    stderr_path = work / f"serve-{port}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "evolink", "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port),
            "--env-file", str(work / "absent.env"), *args, env={**os.environ, **env}, cwd=work,
            stdout=asyncio.subprocess.PIPE, stderr=stderr)
    url = f"http://127.0.0.1:{port}"

    async def ready() -> str:
        assert proc.stdout is not None
        admin = ""
        while b"gateway on" not in (line := await proc.stdout.readline()):
            assert line, f"evolink serve exited early:\n{stderr_path.read_text(errors='replace')}"
            if b"sandbox admin URL" in line:
                admin = line.decode().split("admin URL ", 1)[1].split()[0]
        async with httpx.AsyncClient(base_url=url) as client:
            while True:
                try:
                    if (await client.get("/health/live")).status_code == 200:
                        return admin
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # a separate process: its HTTP answer is the only signal

    try:
        admin_url = await asyncio.wait_for(ready(), start_within)
        yield ServeProcess(proc, url, admin_url, stderr_path)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            proc.kill()
            await proc.communicate()
