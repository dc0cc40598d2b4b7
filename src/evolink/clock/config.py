"""Clock guard configuration from the environment.

Plain dataclass + explicit parsing so a bad value names its variable (``ClockConfigError``) instead of
surfacing as a traceback deep inside the refresh loop.
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_NTP_SERVERS: tuple[str, ...] = (
    "time.cloudflare.com",
    "time.google.com",
    "0.pool.ntp.org",
    "1.pool.ntp.org",
    "time.aws.com",
)
DEFAULT_UPSTREAM_HTTP_URL = "https://web.whatsapp.com"
NTP_PORT = 123
MIN_POLL_SECONDS = 15.0  # RFC 4330 §10: never poll one server more often than this
MIN_STEP_THRESHOLD_SECONDS = 0.5


class ClockConfigError(ValueError):
    """A CLOCK_* variable is invalid; ``str()`` is one line naming the variable."""


class SkewPolicy(StrEnum):
    COMPENSATE = "compensate"
    REFUSE = "refuse"
    WARN = "warn"


@dataclass(frozen=True, slots=True)
class NtpServer:
    host: str
    port: int = NTP_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == NTP_PORT else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClockConfig:
    ntp_servers: tuple[NtpServer, ...] = field(
        default_factory=lambda: tuple(NtpServer(h) for h in DEFAULT_NTP_SERVERS))
    upstream_http_url: str | None = DEFAULT_UPSTREAM_HTTP_URL
    skew_policy: SkewPolicy = SkewPolicy.COMPENSATE
    max_skew_seconds: float = 30.0
    warn_skew_seconds: float = 1.0
    expected_tz: str | None = None
    check_interval_seconds: float = 64.0
    link_max_age_seconds: float = 120.0
    ntp_packets: int = 4
    ntp_packet_spacing_seconds: float = 2.0
    ntp_timeout_seconds: float = 2.0
    http_timeout_seconds: float = 5.0
    step_threshold_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_skew_seconds <= 0:
            raise ClockConfigError("CLOCK_MAX_SKEW_SECONDS: must be > 0")
        if not 0 < self.warn_skew_seconds <= self.max_skew_seconds:
            raise ClockConfigError("CLOCK_WARN_SKEW_SECONDS: must be > 0 and <= CLOCK_MAX_SKEW_SECONDS")
        if self.ntp_packets < 1 or self.ntp_packets > 8:
            raise ClockConfigError("CLOCK_NTP_PACKETS: must be between 1 and 8")
        for name, value in (("CLOCK_CHECK_INTERVAL_SECONDS", self.check_interval_seconds),
                            ("CLOCK_NTP_TIMEOUT_SECONDS", self.ntp_timeout_seconds),
                            ("CLOCK_HTTP_TIMEOUT_SECONDS", self.http_timeout_seconds),
                            ("CLOCK_LINK_MAX_AGE_SECONDS", self.link_max_age_seconds)):
            if value <= 0:
                raise ClockConfigError(f"{name}: must be > 0")
        if self.step_threshold_seconds < MIN_STEP_THRESHOLD_SECONDS:
            # Below this, scheduler jitter between two readings could pass for a step.
            raise ClockConfigError(f"CLOCK_STEP_THRESHOLD_SECONDS: must be >= {MIN_STEP_THRESHOLD_SECONDS:g}")
        if self.ntp_packet_spacing_seconds < 0:
            raise ClockConfigError("CLOCK_NTP_PACKET_SPACING_SECONDS: must be >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClockConfig:
        """Read ``CLOCK_*`` variables; unset or empty means the default."""
        src = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = src.get(name)
            return value.strip() if value is not None and value.strip() else None

        kwargs: dict[str, object] = {}
        if (raw := get("CLOCK_NTP_SERVERS")) is not None:
            kwargs["ntp_servers"] = parse_servers(raw)
        if (raw := get("CLOCK_UPSTREAM_HTTP_URL")) is not None:
            kwargs["upstream_http_url"] = _parse_url(raw)
        if (raw := get("CLOCK_SKEW_POLICY")) is not None:
            try:
                kwargs["skew_policy"] = SkewPolicy(raw.lower())
            except ValueError:
                raise ClockConfigError(
                    f"CLOCK_SKEW_POLICY: {raw!r} is not one of compensate, refuse, warn") from None
        if (raw := get("CLOCK_EXPECTED_TZ")) is not None:
            kwargs["expected_tz"] = _parse_zone("CLOCK_EXPECTED_TZ", raw)
        floats = {
            "CLOCK_MAX_SKEW_SECONDS": "max_skew_seconds",
            "CLOCK_WARN_SKEW_SECONDS": "warn_skew_seconds",
            "CLOCK_CHECK_INTERVAL_SECONDS": "check_interval_seconds",
            "CLOCK_LINK_MAX_AGE_SECONDS": "link_max_age_seconds",
            "CLOCK_NTP_PACKET_SPACING_SECONDS": "ntp_packet_spacing_seconds",
            "CLOCK_NTP_TIMEOUT_SECONDS": "ntp_timeout_seconds",
            "CLOCK_HTTP_TIMEOUT_SECONDS": "http_timeout_seconds",
            "CLOCK_STEP_THRESHOLD_SECONDS": "step_threshold_seconds",
        }
        for var, attr in floats.items():
            if (raw := get(var)) is not None:
                kwargs[attr] = _parse_float(var, raw)
        if (raw := get("CLOCK_NTP_PACKETS")) is not None:
            try:
                kwargs["ntp_packets"] = int(raw)
            except ValueError:
                raise ClockConfigError(f"CLOCK_NTP_PACKETS: {raw!r} is not an integer") from None
        if ("warn_skew_seconds" not in kwargs and "max_skew_seconds" in kwargs
                and isinstance(kwargs["max_skew_seconds"], float)):
            # Keep the default warn threshold valid when only the hard limit is lowered.
            kwargs["warn_skew_seconds"] = min(1.0, kwargs["max_skew_seconds"])
        return cls(**kwargs)  # type: ignore[arg-type]


def parse_servers(raw: str) -> tuple[NtpServer, ...]:
    """``host[:port]`` list, comma or space separated; IPv6 literals as ``[::1]:123``."""
    servers: list[NtpServer] = []
    for item in raw.replace(",", " ").split():
        servers.append(_parse_server(item))
    if not servers:
        raise ClockConfigError("CLOCK_NTP_SERVERS: no server given")
    return tuple(servers)


def _parse_server(item: str) -> NtpServer:
    host, port_s = item, ""
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise ClockConfigError(f"CLOCK_NTP_SERVERS: {item!r} has an unclosed '['")
        host, rest = item[1:end], item[end + 1:]
        if rest and not rest.startswith(":"):
            raise ClockConfigError(f"CLOCK_NTP_SERVERS: {item!r} is not host[:port]")
        port_s = rest[1:]
    elif item.count(":") == 1:
        host, port_s = item.split(":")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ClockConfigError(f"CLOCK_NTP_SERVERS: {item!r} is not host[:port]")
    port = NTP_PORT
    if port_s:
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise ClockConfigError(f"CLOCK_NTP_SERVERS: bad port in {item!r}")
        port = int(port_s)
    return NtpServer(host, port)


def _parse_float(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ClockConfigError(f"{var}: {raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ClockConfigError(f"{var}: {raw!r} is not a finite number")
    return value


def _parse_url(raw: str) -> str | None:
    if raw.lower() in ("off", "none", "false", "0"):
        return None  # upstream HTTP probe disabled
    if not raw.startswith(("http://", "https://")):
        raise ClockConfigError(f"CLOCK_UPSTREAM_HTTP_URL: {raw!r} must start with http:// or https://")
    return raw


def _parse_zone(var: str, raw: str) -> str:
    try:
        zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ClockConfigError(f"{var}: {raw!r} is not a known IANA time zone") from None
    return raw
