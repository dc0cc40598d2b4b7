"""``evolink doctor [--json]``: the deploy checklist.

Clock offset and verdict, timezone, tzdata, database, upstream reachability and TLS, API key, data
directory. ``--json`` prints the same ``application/health+json`` document as ``GET /health`` plus
the deploy checks (and a ``clock`` detail object). Exit code: 0 pass, 1 warn, 2 fail.

The database is probed with SQLAlchemy directly (not ``evolink.store``) so the doctor still works
when the store layer or its migrations are what is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from evolink.api.apikey import KEY_FILE
from evolink.api.health import CheckFn, CheckResult, HealthService
from evolink.api.settings import default_data_dir
from evolink.clock.config import ClockConfig, ClockConfigError
from evolink.clock.guard import ClockGuard
from evolink.clock.kernel import KernelState, read_kernel_state
from evolink.clock.status import ClockStatus
from evolink.clock.timezone import tzdata_version

EVOLUTION_DEFAULT_KEY = "BQYHJGJHJ"  # Evolution's public fallback key: never acceptable
EXIT = {"pass": 0, "warn": 1, "fail": 2}


def _data_dir(env: Mapping[str, str]) -> Path:
    raw = (env.get("EVOLINK_DATA_DIR") or "").strip()
    return Path(raw).expanduser() if raw else default_data_dir()


# --- deploy checks ------------------------------------------------------------------------------------
def database_url(env: Mapping[str, str]) -> str:
    """Async SQLAlchemy URL from DATABASE_PROVIDER / DATABASE_CONNECTION_URI; ValueError names the variable."""
    provider = (env.get("DATABASE_PROVIDER") or "sqlite").strip().lower()
    uri = (env.get("DATABASE_CONNECTION_URI") or "").strip()
    if provider == "sqlite":
        # As the gateway: SQLite always lives in EVOLINK_DATA_DIR; DATABASE_CONNECTION_URI is not read.
        return f"sqlite+aiosqlite:///{_data_dir(env) / 'evolink.db'}"
    if provider in ("postgresql", "postgres", "psql_bouncer"):
        if not uri:
            raise ValueError(f"DATABASE_CONNECTION_URI: required for DATABASE_PROVIDER={provider}")
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
            raise ValueError("DATABASE_CONNECTION_URI: expected a postgresql:// URI")
        base, _, query = rest.partition("?")
        # Prisma's ?schema= is not a libpq/asyncpg option.
        kept = [p for p in query.split("&") if p and not p.startswith("schema=")]
        return f"postgresql+asyncpg://{base}" + (f"?{'&'.join(kept)}" if kept else "")
    raise ValueError(f"DATABASE_PROVIDER: {provider!r} is not supported (sqlite or postgresql)")


def database_check(env: Mapping[str, str]) -> CheckFn:
    async def check() -> CheckResult:
        import time

        from sqlalchemy import text
        from sqlalchemy.engine import make_url
        from sqlalchemy.ext.asyncio import create_async_engine

        try:
            url = database_url(env)
        except ValueError as exc:
            return CheckResult("fail", output=str(exc), component_type="datastore")
        safe = make_url(url).render_as_string(hide_password=True)
        extra: dict[str, Any] = {"url": safe}
        if url.startswith("sqlite"):
            path = Path(url.split(":///", 1)[1])
            exists, creatable = await asyncio.to_thread(_sqlite_state, path)
            if not exists:
                # Do not create the file from a doctor run; the gateway creates it on first start.
                ok = creatable
                return CheckResult("pass" if ok else "fail", None, None,
                                   None if ok else f"cannot create {path}", "datastore", "sqlite",
                                   extra={**extra, "note": "database file will be created on first start"})
            url = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
        engine = create_async_engine(url)
        started = time.perf_counter()
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            return CheckResult("fail", output=f"{type(exc).__name__}: {exc}".replace(url, safe),
                               component_type="datastore", extra=extra)
        finally:
            await engine.dispose()
        return CheckResult("pass", round((time.perf_counter() - started) * 1000, 3), "ms",
                           component_type="datastore", component_id=url.split(":", 1)[0].split("+")[0],
                           extra=extra)

    return check


def _sqlite_state(path: Path) -> tuple[bool, bool]:
    if path.exists():
        return True, True
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return False, os.access(parent, os.W_OK)


def upstream_checks(status: ClockStatus, url: str | None) -> tuple[CheckFn, CheckFn]:
    http = status.http

    async def reachability() -> CheckResult:
        if url is None:
            return CheckResult("warn", output="CLOCK_UPSTREAM_HTTP_URL is off: upstream not probed")
        if http is None:
            return CheckResult("warn", output=f"{url} was not probed")
        if not http.ok and http.error_kind != "no_date":
            return CheckResult("warn", output=f"{url} unreachable ({http.error_kind}): {http.error}",
                               component_id=url)
        return CheckResult("pass", round((http.rtt or 0) * 1000, 3), "ms", component_id=url,
                           extra={"statusCode": http.status_code})

    async def tls() -> CheckResult:
        if url is None or not url.startswith("https://"):
            return CheckResult("warn", output="upstream URL is not https: TLS not verified", component_id=url)
        if http is None:
            return CheckResult("warn", output="TLS not probed", component_id=url)
        if http.error_kind == "tls":
            return CheckResult("fail", output=f"TLS verification failed (a clock off by days breaks "
                                              f"certificate validity too): {http.error}", component_id=url)
        if not http.ok and http.error_kind != "no_date":
            return CheckResult("warn", output="TLS not verified: upstream unreachable", component_id=url)
        return CheckResult("pass", True, "verified", component_id=url)

    return reachability, tls


def api_key_check(env: Mapping[str, str]) -> CheckFn:
    async def check() -> CheckResult:
        return await asyncio.to_thread(_api_key_result, env)

    return check


def _api_key_result(env: Mapping[str, str]) -> CheckResult:
    key = (env.get("AUTHENTICATION_API_KEY") or "").strip()
    path = _data_dir(env) / KEY_FILE
    if key == EVOLUTION_DEFAULT_KEY:
        return CheckResult("fail", "env", "source", "AUTHENTICATION_API_KEY is Evolution's public default "
                           "key: anyone can drive this gateway; set a random key")
    if key:
        return CheckResult("pass", "env", "source", extra={"length": len(key)})
    try:
        if path.is_file() and path.read_text(encoding="utf-8").strip():
            return CheckResult("pass", "file", "source", extra={"path": str(path)})
    except OSError as exc:
        return CheckResult("fail", output=f"cannot read {path}: {exc}")
    return CheckResult("warn", "none", "source",
                       f"no AUTHENTICATION_API_KEY and no {path}: a key is generated on first start "
                       "(read it from that file)")


def data_dir_check(env: Mapping[str, str]) -> CheckFn:
    async def check() -> CheckResult:
        return await asyncio.to_thread(_data_dir_result, env)

    return check


def _data_dir_result(env: Mapping[str, str]) -> CheckResult:
    path = _data_dir(env)
    probe_dir = path
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent  # the gateway creates missing parents
    if not probe_dir.is_dir():
        return CheckResult("fail", str(path), "path", f"{probe_dir} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".evolink-doctor-"):
            pass
    except OSError as exc:
        return CheckResult("fail", str(path), "path", f"{probe_dir} is not writable: {exc.strerror or exc}")
    return CheckResult("pass", str(path), "path", extra={"exists": path.exists()})


async def tzdata_check() -> CheckResult:
    version = tzdata_version()
    system = await asyncio.to_thread(os.path.isdir, "/usr/share/zoneinfo")
    if version:
        return CheckResult("pass", version, "iana", extra={"systemZoneinfo": system})
    if system:
        return CheckResult("warn", None, None, "tzdata wheel missing; using the system zoneinfo only",
                           extra={"systemZoneinfo": True})
    return CheckResult("fail", output="no time zone data at all (install the tzdata wheel)")


# --- runner ---------------------------------------------------------------------------------------------
async def run_doctor(env: Mapping[str, str] | None = None, *,
                     kernel_reader: Callable[[], KernelState] = read_kernel_state,
                     etc: Path = Path("/etc")) -> dict[str, Any]:
    src: Mapping[str, str] = dict(os.environ if env is None else env)
    config_error: str | None = None
    try:
        config = ClockConfig.from_env(src)
    except ClockConfigError as exc:
        config_error = str(exc)
        config = ClockConfig()
    # A one-shot run: at most 2 packets per server keeps it quick and polite.
    config = dataclasses.replace(config, ntp_packets=min(config.ntp_packets, 2),
                                 ntp_packet_spacing_seconds=min(config.ntp_packet_spacing_seconds, 1.0))
    guard = ClockGuard(config, kernel_reader=kernel_reader, env=src, etc=etc, publish_metrics=False)
    status = await guard.check()
    health = HealthService(guard=guard)
    if config_error:
        msg = config_error

        async def config_check() -> CheckResult:
            return CheckResult("fail", output=f"{msg} (defaults used for this run)")

        health.register("clock:config", config_check, ready=False)
    health.register("tzdata:version", tzdata_check, ready=False)
    health.register("database:connection", database_check(src), timeout=10.0)
    reach, tls = upstream_checks(status, config.upstream_http_url)
    health.register("upstream:reachability", reach, ready=False)
    health.register("upstream:tls", tls, ready=False)
    health.register("auth:apiKey", api_key_check(src))
    health.register("storage:dataDir", data_dir_check(src))
    doc = await health.document()
    doc["clock"] = status.to_dict()
    return doc


def render_text(doc: dict[str, Any]) -> str:
    lines = [f"evolink doctor: {doc['status'].upper()}", ""]
    for key, entries in doc["checks"].items():
        for e in entries:
            value = e.get("observedValue")
            shown = "" if value is None else f"{value}{' ' + e['observedUnit'] if e.get('observedUnit') else ''}"
            lines.append(f"  {e['status'].upper():<4}  {key:<24} {shown}")
            if e.get("output"):
                lines.append(f"        {e['output']}")
    clock = doc.get("clock", {})
    lines += ["", f"clock: {clock.get('verdict')} — {clock.get('reason')}", f"sources: {clock.get('sources')}"]
    if clock.get("fix"):
        lines.append(f"fix: {clock['fix']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evolink doctor", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the application/health+json document")
    args = parser.parse_args(argv)
    # The report says everything; keep the guard's log lines (verdict changes) off the terminal.
    logging.basicConfig(level=logging.ERROR)
    try:
        doc = asyncio.run(run_doctor())
    except KeyboardInterrupt:
        return 2
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render_text(doc))
    return EXIT.get(doc["status"], 2)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
