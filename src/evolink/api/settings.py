"""Gateway configuration from the environment (and `.env`), named as Evolution API names it.

Evolution's names and defaults are kept where they exist (so an existing `.env` keeps working);
evolink's own variables carry the `EVOLINK_`, `WA_`, `CONNECT_` prefixes. A bad value never
produces a traceback: `load_settings()` raises `ConfigError` with one line naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EVENT_KEYS: tuple[str, ...] = (
    "APPLICATION_STARTUP", "QRCODE_UPDATED", "MESSAGES_SET", "MESSAGES_UPSERT", "MESSAGES_EDITED",
    "MESSAGES_UPDATE", "MESSAGES_DELETE", "SEND_MESSAGE", "SEND_MESSAGE_UPDATE", "CONTACTS_SET",
    "CONTACTS_UPSERT", "CONTACTS_UPDATE", "PRESENCE_UPDATE", "CHATS_SET", "CHATS_UPSERT", "CHATS_UPDATE",
    "CHATS_DELETE", "GROUPS_UPSERT", "GROUP_UPDATE", "GROUP_PARTICIPANTS_UPDATE", "CONNECTION_UPDATE",
    "LABELS_EDIT", "LABELS_ASSOCIATION", "CALL", "TYPEBOT_START", "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE", "LOGOUT_INSTANCE", "INSTANCE_CREATE", "INSTANCE_DELETE", "STATUS_INSTANCE",
)
"""Event keys a per-instance webhook may list (Evolution 2.3.7's allowed list, same order)."""
EXTENSION_EVENT_KEYS: tuple[str, ...] = ("CLOCK_STEP",)
"""evolink's own events (opt-in: listed by a webhook, or WEBHOOK_EVENTS_<KEY>=true)."""

# Keys that have a global `WEBHOOK_EVENTS_<KEY>` flag in Evolution (per-instance-only ones excluded).
_PER_INSTANCE_ONLY = ("STATUS_INSTANCE", "REMOVE_INSTANCE", "LOGOUT_INSTANCE", "GROUP_UPDATE")
GLOBAL_EVENT_FLAGS: tuple[str, ...] = (*(k for k in EVENT_KEYS if k not in _PER_INSTANCE_ONLY), "GROUPS_UPDATE",
                                       *EXTENSION_EVENT_KEYS)

DEFAULT_NON_RETRYABLE = (400, 401, 403, 404, 422)


class ConfigError(Exception):
    """A configuration value is missing or invalid; ``str()`` is one line naming the variable."""


def default_data_dir() -> Path:
    """``./data`` when the working directory is writable (a checkout / container), else ``~/.evolink``."""
    cwd = Path.cwd()
    if os.access(cwd, os.W_OK):
        return cwd / "data"
    return Path.home() / ".evolink"


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All gateway settings. Field names are the environment variable names (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False, populate_by_name=True)

    # server
    SERVER_PORT: int = Field(8080, ge=0, le=65535)
    SERVER_HOST: str = "0.0.0.0"
    SERVER_URL: str | None = None
    SERVER_NAME: str = "evolution"
    SERVER_DISABLE_MANAGER: bool = False  # Evolution's switch: no /manager page nor its API

    # auth
    AUTHENTICATION_API_KEY: str | None = None
    AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES: bool = False

    # database
    DATABASE_PROVIDER: Literal["sqlite", "postgresql"] = "sqlite"
    DATABASE_CONNECTION_URI: str | None = None
    DATABASE_CONNECTION_CLIENT_NAME: str = "evolution"

    # cluster mode (docs/cluster.md): N nodes sharing PostgreSQL; on with postgresql + CACHE_REDIS_URI
    CACHE_REDIS_URI: str | None = None
    EVOLINK_CLUSTER: bool | None = None  # None: on when DATABASE_PROVIDER=postgresql and CACHE_REDIS_URI is set
    EVOLINK_NODE_ID: str | None = None  # default: host-pid-random
    EVOLINK_NODE_URL: str | None = None  # how other nodes reach this one; default http://127.0.0.1:SERVER_PORT
    EVOLINK_LEASE_SECONDS: float = Field(15.0, ge=1.0, le=300.0)

    @property
    def cluster_mode(self) -> bool:
        if self.EVOLINK_CLUSTER is not None:
            return self.EVOLINK_CLUSTER
        return self.DATABASE_PROVIDER == "postgresql" and bool(self.CACHE_REDIS_URI)

    # qrcode / session
    QRCODE_LIMIT: int = Field(30, ge=1)
    QRCODE_COLOR: str = Field("#198754", pattern=r"^#[0-9a-fA-F]{6}$")
    CONFIG_SESSION_PHONE_CLIENT: str = "Evolution API"
    CONFIG_SESSION_PHONE_NAME: str = "Chrome"
    # WA Web version announced at login, e.g. 2.3000.1043857760; unset = the engine's default
    CONFIG_SESSION_PHONE_VERSION: str | None = None
    DEL_INSTANCE: int | bool = False
    LOG_LEVEL: str = "ERROR,WARN,DEBUG,INFO,LOG,VERBOSE,DARK,WEBHOOKS,WEBSOCKET"

    # webhooks (global)
    WEBHOOK_GLOBAL_ENABLED: bool = False
    WEBHOOK_GLOBAL_URL: str | None = None
    WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS: bool = False
    WEBHOOK_REQUEST_TIMEOUT_MS: int = Field(30000, ge=1)
    WEBHOOK_RETRY_MAX_ATTEMPTS: int = Field(10, ge=1)
    WEBHOOK_RETRY_INITIAL_DELAY_SECONDS: float = Field(5.0, ge=0)
    WEBHOOK_RETRY_USE_EXPONENTIAL_BACKOFF: bool = True
    WEBHOOK_RETRY_MAX_DELAY_SECONDS: float = Field(300.0, ge=0)
    WEBHOOK_RETRY_JITTER_FACTOR: float = Field(0.2, ge=0, le=1)
    WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES: Annotated[list[int], NoDecode] = list(DEFAULT_NON_RETRYABLE)

    # evolink's own
    EVOLINK_DATA_DIR: Path = Field(default_factory=default_data_dir)
    EVOLINK_SECRET_KEY: str | None = None
    WA_WEBSOCKET_URL: str = "wss://web.whatsapp.com/ws/chat"
    WA_ROOT_PUBLIC_KEY: str | None = None  # hex; None = WhatsApp's production root
    CONNECT_WAIT_SECONDS: float = Field(10.0, gt=0, le=120)
    WA_RECONNECT_STABLE_SECONDS: float = Field(60.0, ge=0, le=3600)  # backoff resets after a link this stable
    # request body limits (docs/security.md "Limits"): every route, and /message/* (base64 media)
    EVOLINK_MAX_BODY_BYTES: int = Field(1024 * 1024, ge=1024)
    EVOLINK_MAX_MESSAGE_BODY_BYTES: int = Field(32 * 1024 * 1024, ge=1024)
    # finished outbox rows are purged after these many seconds (docs/security.md "Outbox")
    EVOLINK_OUTBOX_DELIVERED_RETENTION_SECONDS: float = Field(3600.0, ge=0)
    EVOLINK_OUTBOX_FAILED_RETENTION_SECONDS: float = Field(604800.0, ge=0)
    EVOLINK_SEND_MIN_GAP_MS: int = Field(0, ge=0, le=600_000)  # per-instance minimum gap between sends; 0 = off

    # CORS and /verify-creds (Evolution's names and defaults; see docs/gateway.md "Browser apps")
    CORS_ORIGIN: Annotated[list[str], NoDecode] = ["*"]
    CORS_METHODS: Annotated[list[str], NoDecode] = ["POST", "GET", "PUT", "DELETE"]
    CORS_CREDENTIALS: bool = False
    FACEBOOK_APP_ID: str | None = None
    FACEBOOK_CONFIG_ID: str | None = None
    FACEBOOK_USER_TOKEN: str | None = None

    # Global proxy fallback for instances without their own (Evolution's PROXY_*; docs/gateway.md "Proxies")
    PROXY_HOST: str | None = None
    PROXY_PORT: str | None = None
    PROXY_PROTOCOL: str | None = None
    PROXY_USERNAME: str | None = None
    PROXY_PASSWORD: str | None = None

    # /metrics access (Evolution's names; api/metrics.py, docs/security.md): read here so `.env` applies too
    PROMETHEUS_METRICS: str | None = None
    METRICS_AUTH_REQUIRED: str | None = None
    METRICS_USER: str | None = None
    METRICS_PASSWORD: str | None = None
    METRICS_ALLOWED_IPS: str | None = None

    # Event transports (Evolution's names and defaults; docs/events.md)
    WEBSOCKET_ENABLED: bool = False
    WEBSOCKET_GLOBAL_EVENTS: bool = False
    RABBITMQ_ENABLED: bool = False
    RABBITMQ_URI: str = ""
    RABBITMQ_EXCHANGE_NAME: str = Field("evolution_exchange", min_length=1, max_length=255)
    RABBITMQ_GLOBAL_ENABLED: bool = False
    RABBITMQ_PREFIX_KEY: str | None = None
    NATS_ENABLED: bool = False
    NATS_URI: str = ""
    NATS_GLOBAL_ENABLED: bool = False
    NATS_PREFIX_KEY: str | None = None
    EVOLINK_EVENTS_RETRY_MAX_SECONDS: float = Field(30.0, gt=0, le=3600)  # broker retry cap (evolink's own)

    # Per-event global flags, filled from WEBHOOK_EVENTS_<KEY> (not declared one by one).
    webhook_events: dict[str, bool] = Field(default_factory=dict, exclude=True)
    rabbitmq_events: dict[str, bool] = Field(default_factory=dict, exclude=True)  # RABBITMQ_EVENTS_<KEY>
    nats_events: dict[str, bool] = Field(default_factory=dict, exclude=True)  # NATS_EVENTS_<KEY>

    @field_validator("WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("CORS_ORIGIN", "CORS_METHODS", mode="before")
    @classmethod
    def _cors_lists(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("CORS_METHODS")
    @classmethod
    def _cors_methods(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @field_validator("CONFIG_SESSION_PHONE_VERSION", mode="before")
    @classmethod
    def _phone_version(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            from evolink.wa.config import ConfigError as EngineConfigError
            from evolink.wa.config import format_version, parse_version

            try:
                return format_version(parse_version(value))
            except EngineConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def wa_version(self) -> tuple[int, int, int]:
        """The WA Web version the engine announces (CONFIG_SESSION_PHONE_VERSION or the engine's default)."""
        from evolink.wa.config import DEFAULT_VERSION, parse_version

        return parse_version(self.CONFIG_SESSION_PHONE_VERSION) if self.CONFIG_SESSION_PHONE_VERSION else DEFAULT_VERSION

    @field_validator("DEL_INSTANCE", mode="before")
    @classmethod
    def _del_instance(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "false", "0"):
            return False
        return value

    @field_validator("DATABASE_PROVIDER", mode="before")
    @classmethod
    def _provider(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def del_instance_minutes(self) -> int | None:
        if isinstance(self.DEL_INSTANCE, bool) or self.DEL_INSTANCE <= 0:
            return None
        return int(self.DEL_INSTANCE)

    def global_event_enabled(self, key: str) -> bool:
        return self.webhook_events.get(key, False)


def _read_event_flags(env: dict[str, str], prefix: str = "WEBHOOK_EVENTS_") -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for key in GLOBAL_EVENT_FLAGS:
        raw = env.get(f"{prefix}{key}")
        if raw is None:
            continue
        low = raw.strip().lower()
        if low not in ("true", "false", "1", "0", "yes", "no", "on", "off", ""):
            raise ConfigError(f"{prefix}{key}: expected true or false, got {raw!r}")
        flags[key] = low in ("true", "1", "yes", "on")
    return flags


def _env_with_dotenv(env_file: str | Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        for line in Path(env_file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, _, value = line.partition("=")
            merged[name.strip().upper()] = value.strip().strip("'\"")
    merged.update({k.upper(): v for k, v in os.environ.items()})
    return merged


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Settings from env + ``.env`` + overrides; raises ConfigError naming the bad variable."""
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "configuration"
        value = err.get("input")
        shown = "" if name in ("AUTHENTICATION_API_KEY", "EVOLINK_SECRET_KEY", "PROXY_PASSWORD",
                                "FACEBOOK_USER_TOKEN", "METRICS_PASSWORD") else f" (got {value!r})"
        raise ConfigError(f"{name}: {err['msg']}{shown}") from None
    env = _env_with_dotenv(env_file)
    settings.webhook_events = _read_event_flags(env) | dict(overrides.get("webhook_events") or {})
    settings.rabbitmq_events = _read_event_flags(env, "RABBITMQ_EVENTS_") | dict(overrides.get("rabbitmq_events") or {})
    settings.nats_events = _read_event_flags(env, "NATS_EVENTS_") | dict(overrides.get("nats_events") or {})
    for flag, uri, schemes in (("RABBITMQ", settings.RABBITMQ_URI, ("amqp", "amqps")),
                               ("NATS", settings.NATS_URI, ("nats", "tls", "ws", "wss"))):
        if getattr(settings, f"{flag}_ENABLED") and uri.split("://", 1)[0] not in schemes:
            raise ConfigError(f"{flag}_URI: required when {flag}_ENABLED=true, as "
                              f"{schemes[0]}://[user:password@]host[:port] (got {'nothing' if not uri else 'another scheme'})")
    if settings.DATABASE_PROVIDER == "postgresql" and not settings.DATABASE_CONNECTION_URI:
        raise ConfigError("DATABASE_CONNECTION_URI: required when DATABASE_PROVIDER=postgresql")
    if settings.EVOLINK_CLUSTER and settings.DATABASE_PROVIDER != "postgresql":
        raise ConfigError("EVOLINK_CLUSTER: cluster mode needs DATABASE_PROVIDER=postgresql")
    if settings.WEBHOOK_GLOBAL_ENABLED and not settings.WEBHOOK_GLOBAL_URL:
        raise ConfigError("WEBHOOK_GLOBAL_URL: required when WEBHOOK_GLOBAL_ENABLED=true")
    if settings.PROXY_HOST:
        from evolink.gateway.proxy import InvalidProxy, global_proxy

        try:
            global_proxy(settings.PROXY_HOST, settings.PROXY_PORT, settings.PROXY_PROTOCOL, settings.PROXY_USERNAME,
                         settings.PROXY_PASSWORD)
        except InvalidProxy as exc:
            raise ConfigError(f"PROXY_*: {exc}") from None
    if settings.WEBHOOK_GLOBAL_ENABLED and settings.WEBHOOK_GLOBAL_URL:
        from evolink.gateway.webhook_rules import WebhookRuleError, check_url

        try:
            check_url(settings.WEBHOOK_GLOBAL_URL)
        except WebhookRuleError as exc:
            raise ConfigError(f"WEBHOOK_GLOBAL_URL: {exc}") from None
    if settings.WA_ROOT_PUBLIC_KEY is not None:
        try:
            if len(bytes.fromhex(settings.WA_ROOT_PUBLIC_KEY)) != 32:
                raise ValueError
        except ValueError:
            raise ConfigError("WA_ROOT_PUBLIC_KEY: expected 64 hex characters (a curve25519 public key)") from None
    return settings
