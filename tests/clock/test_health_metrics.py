"""/health (application/health+json), /health/live, /health/ready and /metrics, validated by format."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from clock_helpers import Responders, synced_kernel, validate_health_json
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from evolink import metrics
from evolink.api.health import CheckResult, HealthService, create_health_router
from evolink.api.health import router as health_router
from evolink.api.metrics import create_metrics_router
from evolink.clock import ClockConfig, ClockGuard, NtpServer, SkewPolicy


class FakeDb:
    def __init__(self) -> None:
        self.fail = False
        self.dialect = "sqlite"

    async def ping(self) -> None:
        if self.fail:
            raise ConnectionError("database is down")


async def _guard(responders: Responders, *, env: dict[str, str] | None = None, shift: float = 0.0,
                 policy: SkewPolicy = SkewPolicy.COMPENSATE) -> ClockGuard:
    servers = [(await responders.start(skew=0.0))[0] for _ in range(3)]
    cfg = ClockConfig(ntp_servers=tuple(servers), upstream_http_url=None, ntp_packets=2,
                      ntp_packet_spacing_seconds=0.0, ntp_timeout_seconds=1.0, skew_policy=policy)
    guard = ClockGuard(cfg, wall=lambda: time.time() + shift, kernel_reader=synced_kernel,
                       env=env or {"TZ": "UTC"})
    await guard.check()
    return guard


@pytest.fixture
async def client_factory() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI) -> httpx.AsyncClient:
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


def _app(guard: ClockGuard | None, db: FakeDb | None = None) -> FastAPI:
    app = FastAPI()
    app.state.clock_guard = guard
    app.state.database = db
    app.state.instance_states = lambda: {"a": "open", "b": "close", "c": "connecting", "d": "open"}
    app.include_router(health_router)
    app.include_router(create_metrics_router({}))
    return app


async def test_health_document_from_app_state(responders: Responders, client_factory: Any) -> None:
    guard = await _guard(responders)
    client = client_factory(_app(guard, FakeDb()))
    r = await client.get("/health")
    assert r.status_code == 200 and r.headers["content-type"] == "application/health+json"
    doc = r.json()
    validate_health_json(doc)
    assert set(doc["checks"]) == {"clock:offset", "clock:sync", "timezone:config", "database:connection",
                                  "instances:state"}
    offset = doc["checks"]["clock:offset"][0]
    assert offset["status"] == "pass" and offset["observedUnit"] == "s" and abs(offset["observedValue"]) < 0.05
    assert offset["componentId"] == "ntp" and offset["verdict"] == "ok"
    assert doc["checks"]["clock:sync"][0]["observedValue"] == 3
    assert doc["checks"]["timezone:config"][0]["observedValue"] == "UTC"
    assert doc["checks"]["database:connection"][0]["observedUnit"] == "ms"
    assert doc["checks"]["instances:state"][0]["states"] == {"open": 2, "connecting": 1, "close": 1}
    assert doc["status"] == "pass"


async def test_tz_typo_is_flagged_by_health(responders: Responders, client_factory: Any) -> None:
    guard = await _guard(responders, env={"TZ": "Europe/Berlni"})
    doc = (await client_factory(_app(guard)).get("/health")).json()
    validate_health_json(doc)
    tz = doc["checks"]["timezone:config"][0]
    assert tz["status"] == "warn" and tz["valid"] is False and tz["configured"] == "Europe/Berlni"
    assert "did you mean 'Europe/Berlin'" in tz["output"]
    assert doc["status"] == "warn" and "timezone:config" in doc["output"]


async def test_clock_fault_fails_health_but_never_liveness(responders: Responders, client_factory: Any) -> None:
    guard = await _guard(responders, shift=3 * 3600 + 20.0, policy=SkewPolicy.REFUSE)
    client = client_factory(_app(guard, FakeDb()))
    r = await client.get("/health")
    doc = r.json()
    validate_health_json(doc)
    assert r.status_code == 503 and doc["status"] == "fail"
    offset = doc["checks"]["clock:offset"][0]
    assert offset["status"] == "fail" and offset["verdict"] == "local_time_rtc"
    assert offset["zoneOffset"] == "UTC+03:00" and offset["affectedEndpoints"] == ["/instance/connect/{instanceName}"]
    assert "Linking refused" in offset["output"]
    live = await client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "pass"
    validate_health_json(live.json())
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "warn"  # clock never drains traffic


async def test_database_failure_fails_readiness(responders: Responders, client_factory: Any) -> None:
    db = FakeDb()
    db.fail = True
    client = client_factory(_app(await _guard(responders), db))
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    entry = ready.json()["checks"]["database:connection"][0]
    assert entry["status"] == "fail" and "database is down" in entry["output"]
    assert entry["componentType"] == "datastore"
    assert (await client.get("/health/live")).status_code == 200


async def test_pluggable_checks_timeouts_and_errors(client_factory: Any) -> None:
    service = HealthService(check_timeout=0.05)
    never = asyncio.Event()

    async def slow() -> CheckResult:
        await never.wait()
        return CheckResult("pass")

    async def broken() -> CheckResult:
        raise RuntimeError("boom")

    async def nodes() -> list[CheckResult]:
        return [CheckResult("pass", 1, "connections", component_id="n1"),
                CheckResult("warn", 9, "connections", "high", component_id="n2")]

    service.register("upstream:responseTime", slow)
    service.register("cache:connections", broken)
    service.register("pool:connections", nodes, ready=False)
    with pytest.raises(ValueError):
        service.register("bad key", nodes)
    with pytest.raises(ValueError):
        service.register("a:b:c", nodes)
    app = FastAPI()
    app.include_router(create_health_router(service))
    doc = (await client_factory(app).get("/health")).json()
    validate_health_json(doc)
    assert doc["checks"]["upstream:responseTime"][0]["output"] == "check timed out after 0.05 s"
    assert doc["checks"]["cache:connections"][0]["output"] == "RuntimeError: boom"
    assert [e["componentId"] for e in doc["checks"]["pool:connections"]] == ["n1", "n2"]
    assert doc["status"] == "fail"


async def test_metrics_exposition_parses(responders: Responders, client_factory: Any) -> None:
    guard = await _guard(responders)
    decision = await guard.authorize_link("code")
    assert decision.allowed
    metrics.record_pairing_attempt("code", "success", 4.2)
    metrics.record_pairing_attempt("qr", "weird-result")  # bounded -> failed
    metrics.set_instance_states({"a": "open", "b": "close"})
    metrics.set_environment_info("0.1.0", "evolution", "http://gw")
    r = await client_factory(_app(guard)).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("evolink_clock_offset_seconds", "evolink_clock_offset_uncertainty_seconds",
                 "evolink_clock_sync_ok", "evolink_clock_ntp_sources_agreeing",
                 "evolink_clock_last_check_timestamp_seconds", "evolink_timezone_info", "evolink_pairing_attempts",
                 "evolink_pairing_duration_seconds", "evolink_instances", "evolution_instances_total",
                 "evolution_instance_up", "evolution_instance_state", "evolution_environment_info",
                 "evolink_clock_link_decisions"):
        assert name in families, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("evolink_clock_ntp_sources_agreeing", ())] == 3
    assert samples[("evolution_instances_total", ())] == 2
    assert samples[("evolution_instance_up", (("instance", "a"), ("integration", "WHATSAPP-BAILEYS")))] == 1
    assert samples[("evolution_instance_state", (("instance", "b"), ("integration", "WHATSAPP-BAILEYS"),
                                                 ("state", "close")))] == 1
    assert samples[("evolink_instances", (("state", "open"),))] == 1
    assert samples[("evolink_pairing_attempts_total", (("method", "qr"), ("result", "refused_clock")))] >= 0
    assert samples[("evolink_pairing_attempts_total", (("method", "qr"), ("result", "failed")))] >= 1
    assert samples[("evolink_pairing_duration_seconds_count", (("method", "code"),))] >= 1
    tz = families["evolink_timezone_info"].samples[0]
    assert tz.labels["effective"] == "UTC" and tz.labels["valid"] == "true" and tz.labels["tzdata_version"]


async def test_metrics_access_controls(client_factory: Any) -> None:
    def app(env: dict[str, str]) -> httpx.AsyncClient:
        a = FastAPI()
        a.include_router(create_metrics_router(env))
        return client_factory(a)  # type: ignore[no-any-return]

    assert (await app({"PROMETHEUS_METRICS": "false"}).get("/metrics")).status_code == 404
    secured = app({"METRICS_AUTH_REQUIRED": "true", "METRICS_USER": "prom", "METRICS_PASSWORD": "s3cret"})
    r = await secured.get("/metrics")
    assert r.status_code == 401 and r.text == "Authentication required"
    assert r.headers["www-authenticate"] == 'Basic realm="Evolution API Metrics"'
    bad = base64.b64encode(b"prom:nope").decode()
    assert (await secured.get("/metrics", headers={"Authorization": f"Basic {bad}"})).text == "Invalid credentials"
    good = base64.b64encode(b"prom:s3cret").decode()
    assert (await secured.get("/metrics", headers={"Authorization": f"Basic {good}"})).status_code == 200
    misconfigured = app({"METRICS_AUTH_REQUIRED": "true"})
    assert (await misconfigured.get("/metrics")).status_code == 500
    ip = app({"METRICS_ALLOWED_IPS": "10.0.0.1"})
    r = await ip.get("/metrics")
    assert r.status_code == 403 and r.text == "Forbidden: IP not allowed"


def test_ntp_server_type_is_hashable() -> None:
    assert len({NtpServer("a"), NtpServer("a")}) == 1
