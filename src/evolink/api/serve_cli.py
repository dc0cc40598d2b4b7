"""`evolink serve [--sandbox]`: the gateway under uvicorn.

With `--sandbox` an embedded sandbox (WhatsApp-like server + simulated phones) starts in the same
process and the engine is pointed at it; its admin URL is printed so you can create phones and
link them. Bad configuration prints one line naming the variable and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from evolink.api.apikey import ApiKey, resolve_api_key
from evolink.api.settings import ConfigError, Settings, load_settings

log = logging.getLogger("evolink.serve")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolink serve", description="Run the Evolution-compatible HTTP gateway.")
    p.add_argument("--sandbox", action="store_true",
                   help="start an embedded sandbox and point the engine at it (offline)")
    p.add_argument("--host", help="listen address (default SERVER_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default SERVER_PORT or 8080)")
    p.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    p.add_argument("--sandbox-code-ttl", type=float, metavar="SECONDS",
                   help="with --sandbox: a pairing code / QR registration lives this long in the embedded sandbox "
                        "(one QR ref; the engine mirrors it), to watch codes expire and renew (default: the "
                        "sandbox's 180 s codes and 60 s + 5 x 20 s QRs)")
    return p


class StructuredFormatter(logging.Formatter):
    """The usual line plus the record's `extra` fields as one JSON object (instance, event, ...)."""

    _standard = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in self._standard}
        return f"{line} {json.dumps(extra, default=str, sort_keys=True)}" if extra else line


def log_level(evolution_levels: str) -> int:
    """Evolution's LOG_LEVEL is a list of enabled levels; the most verbose one wins. Evolution's
    default (everything enabled) maps to INFO: DEBUG only when asked for without the rest."""
    if evolution_levels == Settings.model_fields["LOG_LEVEL"].default:
        return logging.INFO
    names = {part.strip().upper() for part in evolution_levels.split(",")}
    if names & {"DEBUG", "VERBOSE", "DARK"}:
        return logging.DEBUG
    if names & {"INFO", "LOG"}:
        return logging.INFO
    if "WARN" in names or "WARNING" in names:
        return logging.WARNING
    return logging.ERROR


def announce_key(key: ApiKey) -> None:
    if key.source == "generated":
        print(f"evolink: generated AUTHENTICATION_API_KEY={key.value}\n"
              f"evolink: stored in {key.path} (shown once; set AUTHENTICATION_API_KEY to choose your own)",
              flush=True)
    elif key.source == "file":
        print(f"evolink: using the API key stored in {key.path}", flush=True)


@contextlib.asynccontextmanager
async def embedded_sandbox(data_dir: Path, code_ttl: float | None = None) -> AsyncIterator[Any]:
    from evolink.sandbox.config import SandboxConfig
    from evolink.sandbox.server import Sandbox

    sandbox_dir = data_dir / "sandbox"
    sandbox_dir.mkdir(parents=True, exist_ok=True)
    config = SandboxConfig(data_dir=sandbox_dir)
    if code_ttl is not None:
        config.pairing_code_ttl = config.qr_first_ttl = code_ttl
        config.qr_ref_count, config.qr_close_grace = 1, 0.5
    async with Sandbox.start(config) as sb:
        yield sb


def sandbox_engine_factory(settings: Settings, code_ttl: float) -> Any:
    """The real engine, told the embedded sandbox's shortened code/QR lifetime (so countdowns are true)."""
    from evolink.gateway.engine_factory import real_engine_factory

    return real_engine_factory(ws_url=settings.WA_WEBSOCKET_URL, root_public_key=bytes.fromhex(settings.WA_ROOT_PUBLIC_KEY or ""),
                               phone_client=settings.CONFIG_SESSION_PHONE_CLIENT,
                               phone_name=settings.CONFIG_SESSION_PHONE_NAME, version=settings.wa_version,
                               overrides={"pairing_code_ttl": code_ttl, "qr_first_ttl": code_ttl})


async def _check_database(settings: Settings) -> None:
    """Migrate, and check the creds key against the stored creds (SecretKeyError names the fix)."""
    from evolink.api.app import database_url
    from evolink.store import open_database
    from evolink.store.creds_key import prepare_creds_key
    from evolink.store.keyfile import secure_data_dir

    secure_data_dir(settings.EVOLINK_DATA_DIR, sqlite=settings.DATABASE_PROVIDER == "sqlite")
    db = open_database(database_url(settings))
    try:
        await db.migrate()
        key = await prepare_creds_key(db, settings.EVOLINK_SECRET_KEY, settings.EVOLINK_DATA_DIR,
                                      settings.DATABASE_CONNECTION_CLIENT_NAME)
    finally:
        await db.dispose()
    if key.source == "generated":
        print(f"evolink: generated the creds key in {key.path} (back it up: without it the stored "
              "logins cannot be opened; see docs/security.md)", flush=True)
    if key.sealed_now:
        print(f"evolink: sealed the plaintext creds of {key.sealed_now} instance(s)", flush=True)


async def _serve(settings: Settings, key: ApiKey, sandbox: bool, host: str, port: int,
                 code_ttl: float | None = None) -> int:
    import uvicorn

    from evolink.api.app import create_app
    from evolink.store import DatabaseError
    from evolink.store.creds_key import SecretKeyError

    try:
        await _check_database(settings)
    except DatabaseError as exc:
        print(f"evolink serve: {exc}", file=sys.stderr)
        return 1
    except SecretKeyError as exc:
        print(f"evolink serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"evolink serve: EVOLINK_DATA_DIR: {exc}", file=sys.stderr)
        return 2
    async with contextlib.AsyncExitStack() as stack:
        clock_env = dict(os.environ)
        admin_url: str | None = None
        if sandbox:
            sb = await stack.enter_async_context(embedded_sandbox(settings.EVOLINK_DATA_DIR, code_ttl))
            settings = settings.model_copy(update={"WA_WEBSOCKET_URL": sb.ws_url,
                                                   "WA_ROOT_PUBLIC_KEY": sb.root_public_key})
            admin_url = sb.admin_url
            # Offline: the sandbox's HTTP Date stands in for the WhatsApp origin as the upstream clock.
            clock_env.setdefault("CLOCK_UPSTREAM_HTTP_URL", sb.admin_url + "/admin/clock")
            print(f"evolink: sandbox WebSocket {sb.ws_url}", flush=True)
            print(f"evolink: sandbox admin URL {sb.admin_url}  (POST /admin/phones, "
                  f"POST /admin/phones/<phone>/link-code)", flush=True)
        try:
            from evolink.clock.config import ClockConfigError
            from evolink.clock.guard import ClockGuard

            guard: Any = ClockGuard(env=clock_env)
        except ClockConfigError as exc:
            print(f"evolink serve: {exc}", file=sys.stderr)
            return 2
        if settings.cluster_mode and not settings.EVOLINK_NODE_URL:  # how the other nodes forward to this one
            reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            settings = settings.model_copy(update={"EVOLINK_NODE_URL": f"http://{reach}:{port}"})
        engines = sandbox_engine_factory(settings, code_ttl) if sandbox and code_ttl is not None else None
        app = create_app(settings, api_key=key, clock_guard=guard, sandbox_admin_url=admin_url,
                         engine_factory=engines)
        # Open live streams (the web manager's SSE) never finish by themselves: bound the graceful stop.
        config = uvicorn.Config(app, host=host, port=port, log_level=logging.getLevelName(log_level(settings.LOG_LEVEL)).lower(),
                                lifespan="on", access_log=False, timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        print(f"evolink: gateway on http://{host}:{port} (OpenAPI at /docs)", flush=True)
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            print(f"evolink serve: cannot listen on {host}:{port}", file=sys.stderr)
            return int(exc.code or 1)
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except ConfigError as exc:
        print(f"evolink serve: {exc}", file=sys.stderr)
        return 2
    # LOG_LEVEL applies to evolink's own loggers; libraries (SQLAlchemy, aiosqlite, httpx...) stay at WARNING.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("evolink").setLevel(log_level(settings.LOG_LEVEL))
    try:
        key = resolve_api_key(settings.AUTHENTICATION_API_KEY, settings.EVOLINK_DATA_DIR)
    except OSError as exc:
        print(f"evolink serve: EVOLINK_DATA_DIR: cannot store the generated API key: {exc}", file=sys.stderr)
        return 2
    announce_key(key)
    host = args.host or settings.SERVER_HOST
    port = args.port if args.port is not None else settings.SERVER_PORT
    if args.sandbox_code_ttl is not None and not (args.sandbox and 2 <= args.sandbox_code_ttl <= 600):
        print("evolink serve: --sandbox-code-ttl needs --sandbox and 2 <= SECONDS <= 600", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(settings, key, args.sandbox, host, port, args.sandbox_code_ttl))
    except KeyboardInterrupt:
        return 0
