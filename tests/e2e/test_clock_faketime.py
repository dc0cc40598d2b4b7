"""Issue 6 acceptance through the real gateway process: `evolink serve` runs under libfaketime with
its wall clock 3 h 00 m 20 s ahead (an RTC kept in UTC+03:00 local time, plus 20 s of drift).

Everything else runs in this pytest process on the true clock: three SNTP responders (the
gateway's `CLOCK_NTP_SERVERS`), the sandbox (a *strict* server: its certificates are valid only
±10 min around its own time) and the webhook receiver. The four cases:

1. `/health`, `/metrics` and `evolink doctor --json` diagnose `local_time_rtc`, naming UTC+03:00 zones;
2. `compensate`: link by pairing code on the first try; webhook `date_time` is true UTC;
3. `refuse`: connect refused (Evolution error shape + `clock`), `refused_clock` counted;
4. `warn` (the control): the engine checks the certificate against host time and refuses it, so
   the same link cannot even reach registration (the connect answer names the failed check); once
   the sandbox's certificate is made lenient the same process gets its code. Compensation is what
   made case 2 work.

Also checked on the way: the gateway's HTTP `Date` is 3 h ahead (the shift is real); `/health`
times, `pairingCodeExpiresAt`, the webhook JWT `iat`, `fetchInstances` `createdAt`/`updatedAt` and
the audit row's corrected time are true time; `/health` is 503 under `refuse` while live/ready
stay 200; doctor exits 1 (compensate) / 2 (refuse).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_helpers import (
    FAKETIME_LIB,
    WebhookReceiver,
    faketime_env,
    gateway_process,
    metric_value,
    responder_list,
    run_cli,
    sntp_responders,
)

from evolink.sandbox.server import Sandbox

pytestmark = pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime is not installed (apt-get install faketime)")

SHIFT = 3 * 3600 + 20  # host clock ahead of true time; SNTP measures offset = true - host = -SHIFT
CERT_WINDOW = 600  # the strict sandbox: certificate valid only ±10 min around sandbox time
PHONE = "15550001111"
JWT_KEY = "e2e-webhook-secret"
SLACK = 0.5  # SNTP on loopback measures the shift to a few ms; this only absorbs rounding


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start() as sb:
        async with httpx.AsyncClient(base_url=sb.admin_url, timeout=10) as admin:
            resp = await admin.put("/admin/cert", json={"not_before": -CERT_WINDOW, "not_after": CERT_WINDOW})
            assert resp.status_code == 200, resp.text
            assert (await admin.get("/admin/cert")).json() == resp.json()
            resp = await admin.post("/admin/phones", json={"phone": PHONE})
            assert resp.status_code == 201, resp.text
        yield sb


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def ntp_servers() -> AsyncIterator[str]:
    async with sntp_responders(3) as responders:
        yield responder_list(responders)


def gateway_env(tmp_path: Path, sb: Sandbox, ntp: str, policy: str, **extra: str) -> dict[str, str]:
    return {
        **faketime_env(SHIFT),
        "EVOLINK_DATA_DIR": str(tmp_path / "data"), "AUTHENTICATION_API_KEY": "E2E-GLOBAL-KEY",
        "WA_WEBSOCKET_URL": sb.ws_url, "WA_ROOT_PUBLIC_KEY": sb.root_public_key,
        "LOG_LEVEL": "WARN", "TZ": "UTC",
        "CLOCK_SKEW_POLICY": policy, "CLOCK_NTP_SERVERS": ntp,
        # The sandbox's Date header (true time) stands in for the WhatsApp origin as the upstream clock.
        "CLOCK_UPSTREAM_HTTP_URL": sb.admin_url + "/admin/clock",
        "CLOCK_NTP_PACKETS": "2", "CLOCK_NTP_PACKET_SPACING_SECONDS": "0", "CLOCK_NTP_TIMEOUT_SECONDS": "1",
        "CONNECT_WAIT_SECONDS": "10", "WEBHOOK_RETRY_INITIAL_DELAY_SECONDS": "0.2",
        **extra,
    }


async def create_instance(client: httpx.AsyncClient, name: str, webhook: str, **headers: str) -> None:
    resp = await client.post("/instance/create", json={
        "instanceName": name, "integration": "WHATSAPP-BAILEYS",
        "webhook": {"url": webhook, "enabled": True, "events": [], "headers": headers}})
    assert resp.status_code == 201, resp.text


def clock_check(health: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = health["checks"]["clock:offset"][0]
    return entry


async def measured_health(client: httpx.AsyncClient) -> dict[str, Any]:
    """/health once the guard's first measurement is in (it starts with the process)."""
    deadline = time.monotonic() + 15
    while True:
        resp = await client.get("/health")
        doc: dict[str, Any] = resp.json()
        if clock_check(doc).get("verdict") not in (None, "unknown"):
            return doc
        assert time.monotonic() < deadline, f"no clock measurement within 15 s: {doc}"
        await asyncio.sleep(0.05)  # a separate process: polling its HTTP API is the only signal


def assert_local_time_rtc(clock: dict[str, Any], offset_key: str) -> None:
    assert clock["verdict"] == "local_time_rtc", clock
    assert clock["zoneOffset"] == "UTC+03:00"
    assert "Europe/Moscow" in clock["candidateZones"]
    assert abs(float(clock[offset_key]) + SHIFT) < 0.5, clock


def jwt_claims(authorization: str) -> dict[str, Any]:
    """Claims of `Bearer <HS256 JWT>` after checking its signature with JWT_KEY."""
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    header, body, signature = token.split(".")
    expected = hmac.new(JWT_KEY.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


def utc_stamp(stored: str) -> float:
    """A SQLite UTC column (naive text) as a Unix time."""
    return datetime.fromisoformat(stored).replace(tzinfo=UTC).timestamp()


def utc_iso(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def since_true_now(iso: str) -> float:
    return utc_iso(iso) - time.time()


async def test_health_metrics_and_doctor_diagnose_local_time_rtc(
        tmp_path: Path, sandbox: Sandbox, ntp_servers: str) -> None:
    env = gateway_env(tmp_path, sandbox, ntp_servers, "compensate")
    started = time.time()
    async with gateway_process(env, tmp_path) as gw:
        # libfaketime really shifted the gateway's wall clock: its Date header (1 s resolution) is 3 h ahead.
        before = time.time()
        resp = await gw.client.get("/health")
        served = parsedate_to_datetime(resp.headers["date"]).timestamp()
        assert before + SHIFT - 1 - SLACK <= served <= time.time() + SHIFT + SLACK

        health = await measured_health(gw.client)
        assert resp.headers["content-type"].startswith("application/health+json")
        offset = clock_check(health)
        assert_local_time_rtc(offset, "observedValue")
        assert offset["observedUnit"] == "s" and offset["status"] == "warn"  # compensate: a warning, not a fail
        assert "RTC kept in local time, UTC+03:00, e.g." in offset["output"]
        # health timestamps are corrected (true) time
        assert started - SLACK <= utc_iso(offset["time"]) <= time.time() + SLACK

        metrics = (await gw.client.get("/metrics")).text
        assert metric_value(metrics, "evolink_clock_verdict", {"verdict": "local_time_rtc"}) == 1
        assert abs(metric_value(metrics, "evolink_clock_offset_seconds", {"source": "ntp"}) + SHIFT) < 0.5
        assert metric_value(metrics, "evolink_clock_ntp_sources_agreeing", {}) == 3

    rc, out, err = await run_cli(["doctor", "--json"], env, tmp_path)
    doc = json.loads(out)
    assert (rc, doc["status"]) == (1, "warn"), err  # compensate: a warning, linking still works
    assert clock_check(doc)["status"] == "warn"
    assert_local_time_rtc(clock_check(doc), "observedValue")
    assert_local_time_rtc(doc["clock"], "offsetSeconds")


async def test_compensate_links_by_code_first_try_with_true_utc_webhooks(
        tmp_path: Path, sandbox: Sandbox, ntp_servers: str, receiver: WebhookReceiver) -> None:
    env = gateway_env(tmp_path, sandbox, ntp_servers, "compensate")
    started = time.time()
    async with gateway_process(env, tmp_path) as gw:
        await create_instance(gw.client, "rtc", receiver.url, jwt_key=JWT_KEY)
        asked_at = time.time()
        resp = await gw.client.get("/instance/connect/rtc", params={"number": PHONE})
        assert resp.status_code == 200, resp.text
        first = resp.json()
        code = first.get("pairingCode")
        assert isinstance(code, str) and len(code) == 8, first  # the first answer carries the code
        # Expiry is computed on the corrected clock: minutes from *true* now, not 3 h away.
        assert 0 < since_true_now(first["pairingCodeExpiresAt"]) <= 200, first

        typed_at = time.time()
        async with httpx.AsyncClient(base_url=sandbox.admin_url, timeout=30) as admin:
            linked = await admin.post(f"/admin/phones/{PHONE}/link-code", json={"code": code})
        assert linked.status_code == 200, linked.text  # the phone's first attempt

        def opened() -> bool:
            return any(d.body["data"].get("state") == "open" for d in receiver.events("connection.update"))

        await receiver.wait_for(opened, 20)
        state = (await gw.client.get("/instance/connectionState/rtc")).json()
        assert state == {"instance": {"instanceName": "rtc", "state": "open"}}

        # First try: one device, one code request, and no connection that died in the handshake.
        assert len(sandbox.get_phone(PHONE)["devices"]) == 1
        conns = sandbox.list_connections()
        assert sum(c["stanzas"].get("companion_hello", 0) for c in conns) == 1
        # Every socket got past the Noise handshake (a refused certificate ends it before any stanza).
        assert all(c["stanzas"] for c in conns), [(c["id"], c["state"], c["close_reason"]) for c in conns]
        # Exactly one registration socket (paired, then 515) and one login socket: no retry anywhere.
        assert [c["state"] for c in conns] == ["registration", "login"], conns
        assert "paired" in conns[0]["close_reason"] and conns[1]["open"], conns

        open_event = next(d for d in receiver.events("connection.update") if d.body["data"].get("state") == "open")
        assert open_event.body["data"]["wuid"] == f"{PHONE}@s.whatsapp.net"
        assert typed_at - SLACK <= utc_iso(open_event.body["date_time"]) <= open_event.received_at + SLACK
        # Every webhook's date_time is true UTC: after the gateway started, before it arrived here
        # (causal bounds, so delivery latency on a busy machine cannot make this flaky).
        for delivery in receiver.deliveries:
            stamp = delivery.body["date_time"]
            assert stamp.endswith("Z"), stamp
            assert started - SLACK <= utc_iso(stamp) <= delivery.received_at + SLACK, delivery.body
            # ...and so is the signed JWT's `iat` (a receiver on true time must not see it 3 h ahead).
            claims = jwt_claims(delivery.headers["authorization"])
            assert started - 1 - SLACK <= claims["iat"] <= delivery.received_at + SLACK, claims
            assert claims["exp"] == claims["iat"] + 600, claims

        # Evolution's instance row timestamps are true time as well.
        rows = (await gw.client.get("/instance/fetchInstances")).json()
        for key in ("createdAt", "updatedAt"):
            assert started - SLACK <= utc_iso(rows[0][key]) <= time.time() + SLACK, (key, rows[0])

        metrics = (await gw.client.get("/metrics")).text
        assert metric_value(metrics, "evolink_pairing_attempts_total", {"method": "code", "result": "success"}) == 1
        assert metric_value(metrics, "evolink_pairing_attempts_total", {"result": "refused_clock"}) == 0
        assert metric_value(metrics, "evolink_clock_offset_seconds", {"source": "applied"}) == pytest.approx(
            -SHIFT, abs=0.5)

    # The audit row keeps all three clocks: the host's (3 h ahead), the corrected one and the server's.
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "evolink.db")) as db:
        rows = db.execute("SELECT method, outcome, issued_at_system, issued_at_corrected, issued_at_server, "
                          "expires_at FROM pairing_attempts").fetchall()
    assert len(rows) == 1, rows
    method, outcome, system, corrected, server, expires = rows[0]
    assert (method, outcome) == ("code", "success")
    # (the row is written by the runtime's own task, possibly just after connect answered)
    assert asked_at - SLACK <= utc_stamp(corrected) <= time.time() + SLACK, rows
    assert abs(utc_stamp(system) - utc_stamp(corrected) - SHIFT) < 1, rows  # taken together: differ by the shift
    assert server is None or abs(utc_stamp(server) - utc_stamp(corrected)) < 2, rows
    assert 0 < utc_stamp(expires) - utc_stamp(corrected) <= 200, rows


async def test_refuse_answers_with_the_clock_diagnosis_and_counts_it(
        tmp_path: Path, sandbox: Sandbox, ntp_servers: str) -> None:
    env = gateway_env(tmp_path, sandbox, ntp_servers, "refuse")
    async with gateway_process(env, tmp_path) as gw:
        await create_instance(gw.client, "strict", "http://127.0.0.1:9/unused")
        refused = {"method": "code", "result": "refused_clock"}
        before = metric_value((await gw.client.get("/metrics")).text, "evolink_pairing_attempts_total", refused)

        resp = await gw.client.get("/instance/connect/strict", params={"number": PHONE})
        body = resp.json()
        assert resp.status_code == 200 and body["error"] is True, body  # Evolution's connect error shape
        message = body["message"]
        assert "3h00m20" in message  # the offset
        assert "ntp 3/3 agreeing" in message  # the sources
        assert "local_time_rtc" in message and "UTC+03:00" in message  # the diagnosis
        assert "timedatectl set-local-rtc 0" in message  # the fix
        clock = body["clock"]
        assert_local_time_rtc(clock, "offsetSeconds")
        assert clock["allowed"] is False and clock["policy"] == "refuse"

        after = metric_value((await gw.client.get("/metrics")).text, "evolink_pairing_attempts_total", refused)
        assert after == before + 1
        # QR linking is refused the same way, counted under its own method.
        qr = (await gw.client.get("/instance/connect/strict")).json()
        assert qr["error"] is True and qr["clock"]["verdict"] == "local_time_rtc", qr
        metrics = (await gw.client.get("/metrics")).text
        assert metric_value(metrics, "evolink_pairing_attempts_total", {"method": "qr", "result": "refused_clock"}) == 1

        health = await measured_health(gw.client)
        assert clock_check(health)["status"] == "fail"  # this policy would refuse every link
        assert (await gw.client.get("/health")).status_code == 503
        # ...but a restart cannot fix the host clock: liveness and readiness stay up.
        assert (await gw.client.get("/health/live")).status_code == 200
        assert (await gw.client.get("/health/ready")).status_code == 200
        # Nothing was started: the sandbox never saw a socket, the phone has no device.
        assert sandbox.list_connections() == []
        assert sandbox.get_phone(PHONE)["devices"] == []

    rc, out, err = await run_cli(["doctor", "--json"], env, tmp_path)
    doc = json.loads(out)
    assert (rc, doc["status"], clock_check(doc)["status"]) == (2, "fail", "fail"), err
    assert "timedatectl set-local-rtc 0" in clock_check(doc)["output"]


async def test_warn_without_compensation_the_strict_certificate_is_refused(
        tmp_path: Path, sandbox: Sandbox, ntp_servers: str) -> None:
    """The control: same process, clock and sandbox, but `warn` leaves evolink on host time, so the
    engine checks the ±10 min certificate against a clock 3 h ahead and refuses it."""
    env = gateway_env(tmp_path, sandbox, ntp_servers, "warn", CONNECT_WAIT_SECONDS="3")
    async with gateway_process(env, tmp_path) as gw:
        await create_instance(gw.client, "nocomp", "http://127.0.0.1:9/unused")
        resp = await gw.client.get("/instance/connect/nocomp", params={"number": PHONE})
        body = resp.json()
        assert resp.status_code == 200 and "pairingCode" not in body, body
        assert body["error"] is True and "No pairing code within 3 s" in body["message"], body
        assert "clock" not in body  # warn never refuses: the engine really tried
        # ...and the answer says why nothing came, e.g. "(last attempt: connection closed (certificate, 495):
        # certificate check 'intermediate_validity' failed: expired at ...; retrying)".
        assert re.search(r"last attempt: connection closed \(certificate, \d+\): certificate check "
                         r"'(intermediate|leaf)_validity' failed", body["message"]), body
        # The sandbox saw the engine's sockets end in the handshake: it refused the certificate.
        conns = sandbox.list_connections()
        assert conns and all(c["state"] in ("handshake", "closed") and c["phone"] is None for c in conns), conns
        assert all(c["close_reason"] in (None, "closed by client") for c in conns), conns
        assert sum(c["stanzas"].get("companion_hello", 0) for c in conns) == 0
        assert sandbox.get_phone(PHONE)["devices"] == []
        metrics = (await gw.client.get("/metrics")).text
        assert metric_value(metrics, "evolink_clock_offset_seconds", {"source": "applied"}) == 0
        assert metric_value(metrics, "evolink_pairing_attempts_total", {"result": "refused_clock"}) == 0
        log = gw.stderr()
        # e.g. "server certificate refused: certificate check 'intermediate_validity' failed: expired at ..."
        assert re.search(r"server certificate refused: .*'(intermediate|leaf)_validity' failed", log), log[-3000:]

        # The certificate window was the only obstacle: once the sandbox is lenient (−1 day .. +30 days,
        # its default) the engine's next reconnect gets through and the code arrives.
        async with httpx.AsyncClient(base_url=sandbox.admin_url, timeout=10) as admin:
            resp = await admin.put("/admin/cert", json={"not_before": -86400, "not_after": 30 * 86400})
            assert resp.status_code == 200, resp.text
        deadline = time.monotonic() + 30  # reconnect backoff: full jitter, 1 s base, doubling
        while "pairingCode" not in (body := (await gw.client.get(
                "/instance/connect/nocomp", params={"number": PHONE})).json()):
            assert time.monotonic() < deadline, body  # each call itself waits up to CONNECT_WAIT_SECONDS
        assert len(body["pairingCode"]) == 8, body

