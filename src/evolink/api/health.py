"""Health endpoints in ``application/health+json`` (draft-inadarei-api-health-check-06).

- ``GET /health``: every check; status pass|warn|fail (fail -> HTTP 503).
- ``GET /health/live``: the process answers. Never fails for the clock: a restart cannot fix the
  host clock (Kubernetes would restart-loop the pod).
- ``GET /health/ready``: checks registered with ``ready=True`` (database...) decide; clock and zone
  checks count at most as ``warn`` (2xx), so a bad clock never drains the service of traffic.

``HealthService`` is pluggable: the gateway registers extra checks (``database:connection``,
``instances:state``) as async callables returning ``CheckResult``(s). The module-level ``router``
builds one from ``app.state`` (``clock_guard``, ``database``, ``instance_states``) unless the app
already set ``app.state.health_service``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from evolink import __version__
from evolink.clock.base import Clock, SystemClock, iso_utc
from evolink.clock.guard import ClockGuard
from evolink.clock.policy import decide_link
from evolink.clock.status import iso
from evolink.clock.timezone import check_timezone
from evolink.clock.verdict import VerdictCode

log = logging.getLogger(__name__)

HealthStatus = Literal["pass", "warn", "fail"]
MEDIA_TYPE = "application/health+json"
LINK_ENDPOINTS = ["/instance/connect/{instanceName}"]
_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


def worst(statuses: Sequence[str]) -> HealthStatus:
    rank = max((_RANK[s] for s in statuses), default=0)
    return ("pass", "warn", "fail")[rank]


@dataclass(slots=True)
class CheckResult:
    """One entry of a ``checks`` array (one per node/component instance)."""

    status: HealthStatus
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None
    component_type: str = "component"
    component_id: str | None = None
    time: str | None = None  # ISO 8601 of when the value was observed; defaults to now
    affected_endpoints: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, now: str) -> dict[str, Any]:
        d: dict[str, Any] = {"status": self.status, "componentType": self.component_type}
        if self.component_id is not None:
            d["componentId"] = self.component_id
        if self.observed_value is not None:
            d["observedValue"] = self.observed_value
            if self.observed_unit is not None:
                d["observedUnit"] = self.observed_unit
        d["time"] = self.time or now
        if self.output and self.status != "pass":  # the format reserves output for problems
            d["output"] = self.output
        if self.affected_endpoints and self.status != "pass":
            d["affectedEndpoints"] = self.affected_endpoints
        d.update(self.extra)
        return d


CheckFn = Callable[[], Awaitable[CheckResult | Sequence[CheckResult]]]


@dataclass(slots=True)
class _Check:
    fn: CheckFn
    ready: bool
    timeout: float


def _valid_key(key: str) -> bool:
    parts = key.split(":")
    return len(parts) == 2 and all(parts) and not any(c.isspace() for c in key)


class HealthService:
    def __init__(self, *, guard: ClockGuard | None = None, clock: Clock | None = None,
                 service_id: str = "evolink", version: str = __version__,
                 description: str = "evolink WhatsApp gateway", check_timeout: float = 3.0) -> None:
        self.guard = guard
        self.clock: Clock = clock or (guard.clock if guard is not None else SystemClock())
        self.service_id = service_id
        self.version = version
        self.description = description
        self.check_timeout = check_timeout
        self.started = time.monotonic()
        self._checks: dict[str, _Check] = {}
        if guard is not None:
            self.register("clock:offset", lambda: clock_offset_check(guard), ready=False)
            self.register("clock:sync", lambda: clock_sync_check(guard), ready=False)
            self.register("timezone:config", lambda: timezone_check(guard), ready=False)
        else:
            self.register("timezone:config", standalone_timezone_check, ready=False)

    def register(self, key: str, check: CheckFn, *, ready: bool = True, timeout: float | None = None) -> None:
        """Add (or replace) a check. ``ready=False``: it can make readiness warn, never fail."""
        if not _valid_key(key):
            raise ValueError(f"health check key {key!r} must be 'component:measurement'")
        self._checks[key] = _Check(check, ready, timeout or self.check_timeout)

    def unregister(self, key: str) -> None:
        self._checks.pop(key, None)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._checks)

    def _now(self) -> str:
        return iso_utc(self.clock.now())

    async def _run_one(self, key: str, check: _Check) -> list[CheckResult]:
        try:
            result = await asyncio.wait_for(check.fn(), check.timeout)
        except TimeoutError:
            return [CheckResult("fail", output=f"check timed out after {check.timeout:g} s")]
        except Exception as exc:  # a broken check is a failed check, not a 500
            log.warning("health check %s raised", key, exc_info=True)
            return [CheckResult("fail", output=f"{type(exc).__name__}: {exc}")]
        return [result] if isinstance(result, CheckResult) else list(result)

    async def run(self, *, readiness: bool = False) -> dict[str, Any]:
        keys = list(self._checks)
        results = await asyncio.gather(*(self._run_one(k, self._checks[k]) for k in keys))
        now = self._now()
        checks: dict[str, list[dict[str, Any]]] = {}
        statuses: list[str] = []
        problems: list[str] = []
        for key, items in zip(keys, results, strict=True):
            entries = [r.to_json(now) for r in items]
            checks[key] = entries
            for r in items:
                status = r.status
                if readiness and not self._checks[key].ready and status == "fail":
                    status = "warn"
                statuses.append(status)
                if r.status != "pass":
                    problems.append(f"{key}: {r.output or r.status}")
        doc: dict[str, Any] = {"status": worst(statuses), "version": self.version.split(".")[0],
                               "releaseId": self.version, "serviceId": self.service_id,
                               "description": self.description}
        if problems:
            doc["output"] = "; ".join(problems)
        doc["checks"] = checks
        return doc

    async def document(self) -> dict[str, Any]:
        return await self.run()

    async def readiness(self) -> dict[str, Any]:
        return await self.run(readiness=True)

    def liveness(self) -> dict[str, Any]:
        uptime = time.monotonic() - self.started
        return {"status": "pass", "version": self.version.split(".")[0], "releaseId": self.version,
                "serviceId": self.service_id,
                "checks": {"process:uptime": [{"status": "pass", "componentType": "system",
                                               "observedValue": round(uptime, 3), "observedUnit": "s",
                                               "time": self._now()}]}}


def http_status(doc: dict[str, Any]) -> int:
    return 503 if doc.get("status") == "fail" else 200


def health_response(doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse(doc, status_code=http_status(doc), media_type=MEDIA_TYPE,
                        headers={"Cache-Control": "no-store"})


# --- built-in checks -------------------------------------------------------------------------------
def _not_measured() -> CheckResult:
    return CheckResult("warn", output="clock not measured yet", component_type="system",
                       affected_endpoints=LINK_ENDPOINTS)


async def clock_offset_check(guard: ClockGuard) -> CheckResult:
    status = guard.status
    if status is None:
        return _not_measured()
    cfg = guard.config
    decision = decide_link(status, cfg.skew_policy, cfg.max_skew_seconds)
    code = status.verdict.code
    health: HealthStatus
    if not decision.allowed:
        health = "fail"
    elif status.offset is None or code in (VerdictCode.SKEWED, VerdictCode.LOCAL_TIME_RTC) \
            or abs(status.offset) > cfg.warn_skew_seconds:
        health = "warn"
    else:
        health = "pass"
    extra: dict[str, Any] = {"verdict": str(code), "policy": str(cfg.skew_policy),
                             "maxSkewSeconds": cfg.max_skew_seconds}
    if status.uncertainty is not None:
        extra["uncertainty"] = round(status.uncertainty, 6)
    if status.verdict.zone_offset:
        extra["zoneOffset"] = status.verdict.zone_offset
        extra["candidateZones"] = list(status.verdict.candidate_zones[:5])
    output = decision.message if not decision.allowed else status.verdict.reason
    return CheckResult(health, None if status.offset is None else round(status.offset, 6), "s", output,
                       "system", status.source, iso(status.true_checked_at), LINK_ENDPOINTS, extra)


async def clock_sync_check(guard: ClockGuard) -> CheckResult:
    status = guard.status
    if status is None:
        return _not_measured()
    sel = status.selection
    agreeing = sel.agreeing if sel is not None and sel.majority else 0
    ok = status.ntp_state == "ok" and status.verdict.code is not VerdictCode.UNSYNCED
    extra: dict[str, Any] = {"verdict": str(status.verdict.code), "ntp": status.ntp_state,
                             "sources": status.describe_sources()}
    if status.kernel is not None and status.kernel.available:
        extra["kernelMaxErrorSeconds"] = status.kernel.maxerror
    return CheckResult("pass" if ok else "warn", agreeing, "sources", status.verdict.reason, "system",
                       "ntp", iso(status.true_checked_at), None, extra)


async def timezone_check(guard: ClockGuard) -> CheckResult:
    status = guard.status
    report = status.timezone if status is not None else None
    if report is None:
        report = await asyncio.to_thread(check_timezone, expected=guard.config.expected_tz)
    return _timezone_result(report)


async def standalone_timezone_check() -> CheckResult:
    return _timezone_result(await asyncio.to_thread(check_timezone))


def _timezone_result(report: Any) -> CheckResult:
    extra = {"configured": report.configured, "source": report.source, "valid": report.valid,
             "utcOffset": report.utc_offset, "tzdataVersion": report.tzdata_version}
    if report.expected:
        extra["expected"] = report.expected
    return CheckResult(report.status, report.effective, "zone", "; ".join(report.problems) or None,
                       "system", None, None, None, extra)


def database_check(ping: Callable[[], Awaitable[Any]], component_id: str | None = None) -> CheckFn:
    """``database:connection`` from an async ``ping()``; observedValue is the round trip in ms."""

    async def check() -> CheckResult:
        started = time.perf_counter()
        try:
            await ping()
        except Exception as exc:
            return CheckResult("fail", output=f"{type(exc).__name__}: {exc}", component_type="datastore",
                               component_id=component_id)
        return CheckResult("pass", round((time.perf_counter() - started) * 1000, 3), "ms",
                           component_type="datastore", component_id=component_id)

    return check


def instances_check(states: Callable[[], dict[str, str]]) -> CheckFn:
    """``instances:state``: counts by connection state (informational, always pass)."""

    async def check() -> CheckResult:
        counts = {"open": 0, "connecting": 0, "close": 0}
        for state in states().values():
            counts[state if state in counts else "close"] += 1
        return CheckResult("pass", sum(counts.values()), "instances", component_type="component",
                           extra={"states": counts})

    return check


def cluster_check(cluster: Any) -> CheckFn:
    """``cluster:node``: this node's id, URL and the number of instances it owns (cluster mode)."""

    async def check() -> CheckResult:
        return CheckResult("pass", len(cluster.owned), "instances", component_type="component",
                           extra={"node": cluster.node_id, "url": cluster.url})

    return check


def service_for_app(app: FastAPI) -> HealthService:
    """The app's ``HealthService``, built once from ``app.state`` when the app did not provide one."""
    state = app.state
    service = getattr(state, "health_service", None)
    if isinstance(service, HealthService):
        return service
    guard = getattr(state, "clock_guard", None)
    service = HealthService(guard=guard if isinstance(guard, ClockGuard) else None)
    db = getattr(state, "database", None)
    if db is not None and callable(getattr(db, "ping", None)):
        service.register("database:connection", database_check(db.ping, getattr(db, "dialect", None)))
    states = getattr(state, "instance_states", None)
    if callable(states):
        service.register("instances:state", instances_check(states), ready=False)
    cluster = getattr(state, "cluster", None)
    if cluster is not None:
        service.register("cluster:node", cluster_check(cluster), ready=False)
    state.health_service = service
    return service


class HealthJSONResponse(JSONResponse):
    media_type = MEDIA_TYPE


def _health_doc_schema() -> dict[str, Any]:
    from evolink.api.responses import HealthDocument  # the typed document, for /openapi.json

    return {"model": HealthDocument, "content": {MEDIA_TYPE: {}}}


_DOC: dict[str, Any] = {
    "response_class": HealthJSONResponse,
    "responses": {200: {**_health_doc_schema(), "description": "pass or warn"},
                  503: {**_health_doc_schema(), "description": "fail"}},
}


def create_health_router(service: HealthService | None = None) -> APIRouter:
    """Router bound to ``service`` (or, when None, to the app's service from ``service_for_app``)."""
    r = APIRouter(tags=["health"])

    def resolve(request: Request) -> HealthService:
        return service or service_for_app(request.app)

    @r.get("/health", summary="Health (application/health+json)", **_DOC)
    async def health(request: Request) -> JSONResponse:
        return health_response(await resolve(request).document())

    @r.get("/health/live", summary="Liveness (never fails for the clock)", **_DOC)
    async def live(request: Request) -> JSONResponse:
        return health_response(resolve(request).liveness())

    @r.get("/health/ready", summary="Readiness", **_DOC)
    async def ready(request: Request) -> JSONResponse:
        return health_response(await resolve(request).readiness())

    return r


router = create_health_router()

__all__ = ["MEDIA_TYPE", "CheckResult", "HealthService", "create_health_router", "database_check",
           "health_response", "http_status", "instances_check", "router", "service_for_app", "worst"]

