"""Loopback doubles and process helpers for end-to-end tests of the real `evolink` processes.

Everything here runs in the (unfaked) pytest process and therefore tells *true* time: SNTP
responders, a webhook receiver that timestamps each delivery on arrival, and a launcher for
`evolink serve` / `evolink doctor` children, optionally under libfaketime.

libfaketime notes (0.9.10, Python 3.11), checked when these tests were written:
- The library is preloaded into the Python child directly (`LD_PRELOAD` + `FAKETIME`), which is
  what the `faketime -f` wrapper does, minus the wrapper: the wrapper is a parent process that
  exits on SIGTERM and leaves the real child running (orphaned servers, pipes that never close).
- `FAKETIME` must be a plain number of seconds (`+10820`): a compound spec such as `+3h00m20s`
  is silently misread (it shifted the clock by 180 s, not 3 h 00 m 20 s).
- `FAKETIME_DONT_FAKE_MONOTONIC=1` keeps CLOCK_MONOTONIC real and shifts only the wall clock
  (`time.time()`), which is exactly what a host whose RTC was kept in local time looks like.
  With a constant offset the suite also passes when monotonic is shifted too (asyncio, uvicorn and
  the engine only use monotonic differences), but the real fault never moves CLOCK_MONOTONIC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from evolink.clock.sntp import NtpPacket, decode_packet, encode_packet, unix_to_ntp

FAKETIME_LIB = next((p for p in sorted(Path("/usr/lib").glob("**/faketime/libfaketime.so.1"))), None)
API_KEY = "E2E-GLOBAL-KEY"


# --- SNTP -------------------------------------------------------------------------------------


class TrueTimeResponder(asyncio.DatagramProtocol):
    """A stratum-1 SNTP server answering with this process's (true) clock."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        self.requests += 1
        received = time.time()
        request = decode_packet(data)
        reply = NtpPacket(0, 4, 4, 1, 4, -20, 0.0, 0.0001, b"GPS\0", unix_to_ntp(received - 1),
                          request.transmit_ts, unix_to_ntp(received), unix_to_ntp(time.time()))
        self.transport.sendto(encode_packet(reply), addr)


@contextlib.asynccontextmanager
async def sntp_responders(count: int) -> AsyncIterator[list[TrueTimeResponder]]:
    loop = asyncio.get_running_loop()
    started: list[tuple[asyncio.DatagramTransport, TrueTimeResponder]] = []
    try:
        for _ in range(count):
            started.append(await loop.create_datagram_endpoint(TrueTimeResponder, local_addr=("127.0.0.1", 0)))
        yield [protocol for _, protocol in started]
    finally:
        for transport, _ in started:
            transport.close()


def responder_list(responders: list[TrueTimeResponder]) -> str:
    """The `CLOCK_NTP_SERVERS` value naming these responders."""
    ports = [r.transport.get_extra_info("sockname")[1] for r in responders if r.transport is not None]
    return ",".join(f"127.0.0.1:{port}" for port in ports)


# --- webhook receiver -------------------------------------------------------------------------


@dataclass
class Delivery:
    received_at: float  # true time (this process) when the POST arrived
    body: dict[str, Any]
    headers: dict[str, str]
    started_at: float = 0.0  # when its request line arrived (before any `read_after` hold)


@dataclass
class WebhookReceiver:
    """HTTP/1.1 on 127.0.0.1 recording every POSTed JSON body with its arrival time."""

    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    # Slow receiver (keeps requests in flight): seconds to wait before reading each body, and before
    # answering 200 once it is recorded; `holding` is set while a request waits in either place.
    read_after: Callable[[], float] | None = None
    respond_after: Callable[[], float] | None = None
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    holds: int = 0
    _server: asyncio.Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                started = time.time()
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                if self.read_after is not None:
                    await self._hold(self.read_after())
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                arrived = time.time()
                if body:
                    self.deliveries.append(Delivery(arrived, json.loads(body), headers, started))
                self._changed.set()
                if self.respond_after is not None:
                    await self._hold(self.respond_after())
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _hold(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self.holds += 1
        self.holding.set()
        self._changed.set()
        try:
            await asyncio.sleep(seconds)  # a slow receiver, not synchronisation
        finally:
            self.holding.clear()

    def events(self, event: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.body.get("event") == event]

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within)


# --- processes --------------------------------------------------------------------------------


def faketime_env(shift_seconds: int) -> dict[str, str]:
    """Environment that runs a child's wall clock `shift_seconds` ahead of true time."""
    assert FAKETIME_LIB is not None
    return {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": f"{shift_seconds:+d}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class GatewayProcess:
    proc: asyncio.subprocess.Process
    client: httpx.AsyncClient
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def gateway_process(env: Mapping[str, str], work: Path,
                          *, start_within: float = 30.0) -> AsyncIterator[GatewayProcess]:
    """`evolink serve` as a child process, up and answering HTTP."""
    port = free_port()
    stderr_path = work / f"serve-{port}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "evolink", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--env-file", str(work / "absent.env"), env={**os.environ, **env}, cwd=work,
            stdout=asyncio.subprocess.PIPE, stderr=stderr)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"apikey": API_KEY}, timeout=30)
    running = GatewayProcess(proc, client, stderr_path)
    try:
        await asyncio.wait_for(_until_answering(running), start_within)
        yield running
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.terminate()
        try:
            # communicate() drains stdout to EOF, so the pipe transport closes with the loop still alive.
            await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            proc.kill()
            await proc.communicate()


async def _until_answering(gw: GatewayProcess) -> None:
    assert gw.proc.stdout is not None
    while b"gateway on" not in (line := await gw.proc.stdout.readline()):
        assert line, f"evolink serve exited early:\n{gw.stderr()}"
    while True:
        try:
            if (await gw.client.get("/health/live")).status_code == 200:
                return
        except httpx.TransportError:
            # A separate process: uvicorn binds just after the banner; its HTTP answer is the only signal.
            await asyncio.sleep(0.05)


async def run_cli(args: list[str], env: Mapping[str, str], work: Path,
                  within: float = 30.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", *args, env={**os.environ, **env}, cwd=work,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- metrics ----------------------------------------------------------------------------------


def metric_value(text: str, name: str, labels: Mapping[str, str]) -> float:
    """The sample `name{labels...}` (labels may be a subset) from a Prometheus text page; 0 if absent."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
