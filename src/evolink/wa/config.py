"""Engine configuration: one frozen dataclass per engine instance.

Defaults follow the real service (URL, Origin, root key, WA Web version); tests shrink the timers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

DEFAULT_WS_URL = "wss://web.whatsapp.com/ws/chat"
DEFAULT_ORIGIN = "https://web.whatsapp.com"
# WhatsApp's long-term Noise certificate root (both Baileys and whatsmeow pin it).
WA_ROOT_PUBLIC_KEY = bytes.fromhex("142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b")
# WA Web version shipped by baileys@7.0.0-rc14 (the pinned interop peer). WhatsApp retires old versions
# (every login then fails with `failure 405`); the gateway overrides it with CONFIG_SESSION_PHONE_VERSION.
DEFAULT_VERSION: tuple[int, int, int] = (2, 3000, 1043857760)
VERSION_VARIABLE = "CONFIG_SESSION_PHONE_VERSION"

# DeviceProps.PlatformType by browser name (subset that matters for display).
_PLATFORM_TYPES = {
    "CHROME": 1, "FIREFOX": 2, "IE": 3, "OPERA": 4, "SAFARI": 5, "EDGE": 6, "DESKTOP": 7,
}
# CompanionWebClientType id used in the QR string and companion_hello.
_COMPANION_IDS = {
    "CHROME": "1", "EDGE": "2", "FIREFOX": "3", "IE": "4", "OPERA": "5", "SAFARI": "6", "DESKTOP": "7",
}


class ConfigError(ValueError):
    """An engine option is out of range or inconsistent."""


def parse_version(text: str) -> tuple[int, int, int]:
    """`"2.3000.1043857760"` → `(2, 3000, 1043857760)`: three dot-separated decimal numbers, each fitting
    the ClientPayload's uint32 fields (ASCII digits only)."""
    parts = text.strip().split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
        raise ConfigError(f"expected a WA Web version like 2.3000.1043857760 (three numbers), got {text!r}")
    major, minor, build = (int(p) for p in parts)
    if max(major, minor, build) >= 1 << 32:
        raise ConfigError(f"WA Web version numbers must be below 2^32, got {text!r}")
    return major, minor, build


def format_version(version: tuple[int, int, int]) -> str:
    return ".".join(str(p) for p in version)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    # transport
    ws_url: str = DEFAULT_WS_URL
    origin: str = DEFAULT_ORIGIN
    # e.g. "http://proxy:3128" or "socks5h://user:pass@..." (websockets' own proxy support; SOCKS needs
    # python-socks). Not in repr: it may carry a password.
    proxy: str | None = field(default=None, repr=False)
    root_public_key: bytes = WA_ROOT_PUBLIC_KEY
    cert_time_tolerance: float = 60.0  # seconds of clock skew accepted on cert validity windows
    connect_timeout: float = 20.0  # TCP+TLS+WS upgrade, and the wait for ServerHello
    query_timeout: float = 30.0  # any IQ we send and wait for
    extra_headers: tuple[tuple[str, str], ...] = ()

    # identity shown to the phone / server
    version: tuple[int, int, int] = DEFAULT_VERSION
    browser_os: str = "Mac OS"
    browser_name: str = "Chrome"
    push_name: str | None = None
    country_code: str = "US"

    # QR: the server sends N refs at once; the client shows them in turn (WA Web: 60 s, then 20 s)
    qr_first_ttl: float = 60.0
    qr_next_ttl: float = 20.0
    # Pairing code lifetime. The real server does not state it; the registration socket it is bound to
    # lives about 160 s (60 + 5x20), the sandbox defaults to 180 s. We report the smaller bound.
    pairing_code_ttl: float = 160.0
    pairing_wait_timeout: float = 30.0  # how long request_pairing_code waits for a registration socket

    # keepalive: w:p ping every [min, max) seconds; the link is dead after `dead_after` s of silence
    keepalive_min: float = 20.0
    keepalive_max: float = 30.0
    keepalive_dead_after: float = 45.0

    # reconnect: full-jitter exponential backoff, capped, reset once a link stayed open `stable_after` s
    reconnect_base: float = 1.0
    reconnect_cap: float = 60.0
    reconnect_stable_after: float = 60.0
    reconnect_max_attempts: int | None = None  # None = forever

    # pre-keys: upload `prekey_upload_count` keys when the server holds fewer than `prekey_min_count`
    prekey_min_count: int = 5
    prekey_upload_count: int = 50

    event_queue_size: int = 256
    max_frame_size: int = (1 << 24) - 1
    extra: dict[str, str] = field(default_factory=dict)  # free-form tags for logging (instance name ...)

    def __post_init__(self) -> None:
        if not self.ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"ws_url must be ws:// or wss://, got {self.ws_url!r}")
        if len(self.root_public_key) != 32:
            raise ConfigError("root_public_key must be 32 bytes")
        if not 0 < self.keepalive_min <= self.keepalive_max:
            raise ConfigError("need 0 < keepalive_min <= keepalive_max")
        if self.keepalive_dead_after <= 0:
            raise ConfigError("keepalive_dead_after must be positive")
        if self.reconnect_base <= 0 or self.reconnect_cap < self.reconnect_base:
            raise ConfigError("need 0 < reconnect_base <= reconnect_cap")
        if self.reconnect_stable_after < 0:
            raise ConfigError("reconnect_stable_after must be >= 0")
        if self.qr_first_ttl <= 0 or self.qr_next_ttl <= 0 or self.pairing_code_ttl <= 0:
            raise ConfigError("QR and pairing-code lifetimes must be positive")
        if self.prekey_upload_count < 1 or self.prekey_min_count < 0:
            raise ConfigError("pre-key counts out of range")
        if self.event_queue_size < 1:
            raise ConfigError("event_queue_size must be >= 1")
        if self.cert_time_tolerance < 0:
            raise ConfigError("cert_time_tolerance must be >= 0")

    @property
    def platform_type(self) -> int:
        return _PLATFORM_TYPES.get(self.browser_name.upper(), 1)

    @property
    def companion_platform_id(self) -> str:
        return _COMPANION_IDS.get(self.browser_name.upper(), "9")

    @property
    def platform_display(self) -> str:
        # The server validates the "Browser (OS)" form.
        return f"{self.browser_name} ({self.browser_os})"

    @property
    def build_hash(self) -> bytes:
        return hashlib.md5(".".join(map(str, self.version)).encode(), usedforsecurity=False).digest()
