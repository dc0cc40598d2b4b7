"""Issue 10 item 11: /metrics stays open by default (Prometheus convention); METRICS_AUTH_REQUIRED=true
requires the global API key (`apikey`) or Basic auth (METRICS_USER/METRICS_PASSWORD)."""

from __future__ import annotations

import base64
from pathlib import Path

from gw_fakes import FakeHub
from gw_helpers import GLOBAL_KEY, create_instance, make_settings, running_gateway


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_metrics_open_by_default(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _app):
        await create_instance(client, "visible-name")
        resp = await client.get("/metrics", headers={"apikey": ""})
        assert resp.status_code == 200 and "evolink_" in resp.text


async def test_metrics_auth_required_takes_the_api_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, METRICS_AUTH_REQUIRED="true")
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, _app):
        await create_instance(client, "a", token="TOKEN-OF-A")
        for headers in ({"apikey": ""}, {"apikey": "wrong"}, {"apikey": "TOKEN-OF-A"},
                        {"apikey": "", **_basic("prom", GLOBAL_KEY)}):
            resp = await client.get("/metrics", headers=headers)
            assert resp.status_code == 401, headers
            assert "evolink_" not in resp.text
        resp = await client.get("/metrics", headers={"apikey": GLOBAL_KEY})
        assert resp.status_code == 200 and "evolink_" in resp.text


async def test_metrics_auth_required_takes_basic_or_the_api_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, METRICS_AUTH_REQUIRED="true", METRICS_USER="prom", METRICS_PASSWORD="s3cret")
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, _app):
        anonymous = await client.get("/metrics", headers={"apikey": ""})
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
        assert (await client.get("/metrics", headers={"apikey": "", **_basic("prom", "nope")})).status_code == 401
        assert (await client.get("/metrics", headers={"apikey": "", **_basic("prom", "s3cret")})).status_code == 200
        assert (await client.get("/metrics", headers={"apikey": GLOBAL_KEY})).status_code == 200
