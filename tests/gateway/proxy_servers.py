"""Small loopback proxies for tests: HTTP CONNECT (RFC 9110 §9.3.6, Basic auth) and SOCKS5 (RFC 1928,
user/password auth RFC 1929). Each records what the gateway's sockets did through it: connections
accepted, tunnels opened, and the local port of every upstream socket (to match the sandbox's
connection log), and can be told to refuse every tunnel."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import struct
from dataclasses import dataclass, field


@dataclass
class ProxyServer:
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    refuse: bool = False
    port: int = 0
    accepted: int = 0
    tunnels: int = 0
    refused: int = 0
    auth_failures: int = 0
    upstream_ports: list[int] = field(default_factory=list)
    targets: list[tuple[str, int]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream = await self.negotiate(reader, writer)
            if upstream is not None:
                await self._pipe(reader, writer, *upstream)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            self._changed.set()

    async def open_upstream(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        up_reader, up_writer = await asyncio.open_connection(host, port)
        self.tunnels += 1
        self.targets.append((host, port))
        self.upstream_ports.append(up_writer.get_extra_info("sockname")[1])
        self._changed.set()
        return up_reader, up_writer

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            up_writer.close()

    async def negotiate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        raise NotImplementedError

    async def wait_for(self, predicate: object, within: float = 10.0) -> None:
        assert callable(predicate)

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within)


class HttpConnectProxy(ProxyServer):
    async def negotiate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        request = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if len(request) != 3 or request[0] != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return None
        if self.username is not None:
            expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.auth_failures += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                return None
        if self.refuse:
            self.refused += 1
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return None
        host, _, port = request[1].rpartition(":")
        upstream = await self.open_upstream(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        return upstream


class Socks5Proxy(ProxyServer):
    async def negotiate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5:
            return None
        want = 2 if self.username is not None else 0
        if want not in methods:
            writer.write(b"\x05\xff")
            return None
        writer.write(bytes([5, want]))
        if want == 2:
            _ver, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode()
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode()
            ok = user == self.username and password == self.password
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            if not ok:
                self.auth_failures += 1
                return None
        _ver, cmd, _rsv, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 3:
            (n,) = await reader.readexactly(1)
            host = (await reader.readexactly(n)).decode()
        else:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        reply_tail = b"\x00\x01" + b"\x00" * 6
        if cmd != 1 or self.refuse:
            self.refused += 1
            writer.write(b"\x05\x02" + reply_tail)  # connection not allowed by ruleset
            return None
        upstream = await self.open_upstream(host, port)
        writer.write(b"\x05\x00" + reply_tail)
        await writer.drain()
        return upstream
