"""An instance's proxy: Evolution's fields (`host`, `port`, `protocol`, `username`, `password`) turned
into the URL the engine hands to `websockets` (which tunnels through HTTP CONNECT itself and through
SOCKS with `python-socks`), a redacted form for logs and messages, and a reachability check.

Protocol caveats:
- `socks5` connects as `socks5h` (the proxy resolves the WhatsApp host name, as Evolution's
  `socks-proxy-agent` does): no DNS query leaves the host outside the proxy.
- `socks4` resolves locally (SOCKS4 carries an IPv4 address); it has no password, only a user id.
- `https` is TLS to the proxy itself (then CONNECT inside it), checked against the system CAs.
The password is percent-encoded into the URL and never appears in `redacted()`, `repr` or logs.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

PROTOCOLS = ("http", "https", "socks4", "socks5")
_SCHEMES = {"http": "http", "https": "https", "socks4": "socks4", "socks5": "socks5h"}
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F.]*:[0-9a-fA-F:.]*|[A-Za-z0-9._-]+)$")  # name, IPv4, IPv6
MASK = "********"  # what `find` shows instead of a stored password; sending it back keeps the password


class InvalidProxy(ValueError):
    """The proxy fields are unusable (the message names the field) or the proxy does not tunnel."""


@dataclass(frozen=True, slots=True)
class ProxySpec:
    host: str
    port: int
    protocol: str
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def parse(cls, host: str | None, port: str | int | None, protocol: str | None, username: str | None = None,
              password: str | None = None) -> ProxySpec:
        """Validate Evolution's fields (port may be a string); raises InvalidProxy naming the field."""
        host = (host or "").strip()
        proto = (protocol or "").strip().lower()
        if proto not in PROTOCOLS:
            raise InvalidProxy(f'"protocol" must be one of {", ".join(PROTOCOLS)}, got {protocol!r}')
        if not host or not _HOST.match(host):
            raise InvalidProxy(f'"host" must be a host name or IP address without scheme or port, got {host!r}')
        try:
            number = int(str(port).strip())
        except ValueError:
            number = 0
        if not 0 < number < 65536:
            raise InvalidProxy(f'"port" must be a number from 1 to 65535, got {port!r}')
        if proto == "socks4" and password:
            raise InvalidProxy('"password": SOCKS4 has no passwords (use socks5)')
        return cls(host, number, proto, (username or "").strip(), password or "")

    def _base(self, userinfo: str) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{_SCHEMES[self.protocol]}://{userinfo}{host}:{self.port}"

    def url(self) -> str:
        """The URL for `websockets.connect(proxy=...)` (contains the password: never log it)."""
        if not self.username:
            return self._base("")
        return self._base(f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@")

    def redacted(self) -> str:
        """`scheme://user:***@host:port` for logs and API messages."""
        return self._base(f"{self.username}:***@" if self.username else "")

    async def check(self, target: str, within: float = 10.0) -> None:
        """Open a tunnel through the proxy to `target`'s host and port (a ws:// or wss:// URL) and close
        it; raises InvalidProxy with the reason when the proxy refuses, is down or is too slow."""
        from python_socks import ProxyType
        from python_socks.async_.asyncio.v2 import Proxy

        parts = urlsplit(target)
        dest_host = parts.hostname or ""
        dest_port = parts.port or (443 if parts.scheme == "wss" else 80)
        kind = {"http": ProxyType.HTTP, "https": ProxyType.HTTP, "socks4": ProxyType.SOCKS4,
                "socks5": ProxyType.SOCKS5}[self.protocol]
        kwargs: dict[str, Any] = {"rdns": self.protocol == "socks5"}
        if self.protocol == "https":
            kwargs["proxy_ssl"] = ssl.create_default_context()
        proxy = Proxy(kind, self.host.strip("[]"), self.port, self.username or None, self.password or None, **kwargs)
        try:
            stream = await proxy.connect(dest_host, dest_port, timeout=within)
        except Exception as exc:  # python-socks: ProxyError / ProxyConnectionError / ProxyTimeoutError / ssl
            raise InvalidProxy(f"{self.redacted()} did not open a tunnel to {dest_host}:{dest_port}: "
                               f"{type(exc).__name__}: {exc}") from None
        try:
            await asyncio.wait_for(stream.close(), 2.0)
        except (OSError, TimeoutError):
            pass


class ProxyUnavailable(Exception):
    """The instance has a proxy that cannot be used (e.g. its password was sealed with another key):
    the engine does not start, rather than connect without it and expose the host's address."""


def global_proxy(host: str | None, port: str | None, protocol: str | None, username: str | None,
                 password: str | None) -> ProxySpec | None:
    """Evolution's PROXY_* fallback (port defaults to 80, protocol to http); None when PROXY_HOST is unset."""
    if not host:
        return None
    return ProxySpec.parse(host, port or "80", protocol or "http", username, password)


async def resolve_proxy(store: Any, instance_id: str, fallback: ProxySpec | None) -> ProxySpec | None:
    """The proxy an instance connects through: its own when enabled, else the global one, else none."""
    from evolink.store import SealError

    try:
        row = await store.get_proxy(instance_id)
    except SealError as exc:
        raise ProxyUnavailable(f"the instance's proxy password cannot be read: {exc}") from None
    if row is not None and row.enabled:
        try:
            return ProxySpec.parse(row.host, row.port, row.protocol, row.username, row.password)
        except InvalidProxy as exc:
            raise ProxyUnavailable(f"the instance's stored proxy is invalid: {exc}") from None
    return fallback
