"""Issue 16 acceptance through the real gateway process: the host wall clock is stepped while
`evolink serve` runs, with a pairing code pending.

libfaketime re-reads its offset from `FAKETIME_TIMESTAMP_FILE` on every call when
`FAKETIME_NO_CACHE=1` (and no `FAKETIME` variable, which would take priority), so rewriting that
file steps the child's wall clock exactly as `date -s` or a VM resume would; `CLOCK_MONOTONIC` stays
real (`FAKETIME_DONT_FAKE_MONOTONIC=1`). Everything else (SNTP responders, the sandbox, the webhook
receiver) runs in this process on the true clock.

The sandbox is strict (certificates valid only ±10 min around its time), so the login socket after
the phone enters the code only passes the certificate check if the step was measured and the
corrected clock updated: an uncorrected +2 h or +1 h 30 min host clock fails it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from e2e_helpers import (
    API_KEY,
    FAKETIME_LIB,
    WebhookReceiver,
    gateway_process,
    metric_value,
    responder_list,
    sntp_responders,
)

from evolink.sandbox.server import Sandbox

pytestmark = pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime is not installed (apt-get install faketime)")

PHONE = "15550003333"
CERT_WINDOW = 600
DETECT_WITHIN = 2.0  # issue 16: a step is detected within 2 s
SLACK = 1.0  # API instants are whole milliseconds of a corrected clock measured over loopback SNTP


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start() as sb:
        async with httpx.AsyncClient(base_url=sb.admin_url, timeout=10) as admin:
            resp = await admin.put("/admin/cert", json={"not_before": -CERT_WINDOW, "not_after": CERT_WINDOW})
            assert resp.status_code == 200, resp.text
            assert (await admin.post("/admin/phones", json={"phone": PHONE})).status_code == 201
        yield sb


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


def iso_unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_steps_during_a_pending_code_are_detected_and_the_code_links_first_try(
        tmp_path: Path, sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    assert FAKETIME_LIB is not None
    rc = tmp_path / "faketime.rc"
    rc.write_text("+0\n")
    async with sntp_responders(3) as responders:
        env = {
            "LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME_TIMESTAMP_FILE": str(rc), "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "EVOLINK_DATA_DIR": str(tmp_path / "data"), "AUTHENTICATION_API_KEY": API_KEY,
            "WA_WEBSOCKET_URL": sandbox.ws_url, "WA_ROOT_PUBLIC_KEY": sandbox.root_public_key,
            "LOG_LEVEL": "WARN", "TZ": "UTC", "CLOCK_SKEW_POLICY": "compensate",
            "CLOCK_NTP_SERVERS": responder_list(responders),
            "CLOCK_UPSTREAM_HTTP_URL": sandbox.admin_url + "/admin/clock",
            "CLOCK_NTP_PACKETS": "2", "CLOCK_NTP_PACKET_SPACING_SECONDS": "0", "CLOCK_NTP_TIMEOUT_SECONDS": "1",
            "CONNECT_WAIT_SECONDS": "10", "WEBHOOK_RETRY_INITIAL_DELAY_SECONDS": "0.2",
        }
        async with gateway_process(env, tmp_path) as gw:
            resp = await gw.client.post("/instance/create", json={
                "instanceName": "step", "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": receiver.url, "enabled": True,
                            "events": ["CONNECTION_UPDATE", "CLOCK_STEP"]}})
            assert resp.status_code == 201, resp.text
            first = (await gw.client.get("/instance/connect/step", params={"number": PHONE})).json()
            code, expires = first["pairingCode"], iso_unix(first["pairingCodeExpiresAt"])
            assert 0 < expires - time.time() <= 200, first

            for offset, direction, seen in (("+7200", "forward", 1), ("+5400", "backward", 2)):
                stepped_at = time.time()
                rc.write_text(offset + "\n")
                await receiver.wait_for(lambda n=seen: len(receiver.events("clock.step")) >= n, 15)
                step = receiver.events("clock.step")[seen - 1].body["data"]
                assert step["direction"] == direction, step
                expected = 7200 if direction == "forward" else -1800  # signed: host time moved back
                assert step["stepSeconds"] == pytest.approx(expected, abs=2), step
                # detected within 2 s of the step, stamped on the already corrected (true) clock
                detected = iso_unix(step["detectedAt"])
                assert stepped_at - SLACK <= detected <= stepped_at + DETECT_WITHIN + SLACK, (stepped_at, step)

                again = (await gw.client.get("/instance/connect/step", params={"number": PHONE})).json()
                assert again["pairingCode"] == code, again  # the same code: a step is not its life passing
                # its expiry is the same true instant as before the step
                assert iso_unix(again["pairingCodeExpiresAt"]) == pytest.approx(expires, abs=SLACK), again
                left = expires - time.time()
                assert again["pairingCodeExpiresIn"] == pytest.approx(left, abs=SLACK + 1), again

            metrics = (await gw.client.get("/metrics")).text
            assert metric_value(metrics, "evolink_clock_steps_total", {"direction": "forward"}) == 1
            assert metric_value(metrics, "evolink_clock_steps_total", {"direction": "backward"}) == 1

            async with httpx.AsyncClient(base_url=sandbox.admin_url, timeout=30) as admin:
                linked = await admin.post(f"/admin/phones/{PHONE}/link-code", json={"code": code})
            assert linked.status_code == 200, linked.text  # the phone's first entry

            def opened() -> bool:
                return any(d.body["data"].get("state") == "open" for d in receiver.events("connection.update"))

            await receiver.wait_for(opened, 20)
            conns = sandbox.list_connections()
            assert sum(c["stanzas"].get("companion_hello", 0) for c in conns) == 1, conns
            # the login socket passed the strict certificate: the corrected clock followed both steps
            assert [c["state"] for c in conns] == ["registration", "login"], conns
            assert conns[1]["open"], conns
