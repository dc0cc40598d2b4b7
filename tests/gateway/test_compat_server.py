"""Issue 15: `/verify-creds` and CORS as Evolution 2.3.7 answers them (the manager's sign-in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from gw_fakes import FakeHub
from gw_helpers import GLOBAL_KEY, create_instance, make_settings, running_gateway

UNAUTHORIZED = {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}


async def test_verify_creds_global_key_instance_token_wrong_key(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _):
        await create_instance(client, "a", token="TOKEN-A")
        ok = await client.post("/verify-creds", headers={"apikey": GLOBAL_KEY})
        assert ok.status_code == 200, ok.text
        # FACEBOOK_* unset: Express drops the undefined keys from the JSON
        assert ok.json() == {"status": 200, "message": "Credentials are valid"}
        for key in ("TOKEN-A", "wrong", ""):  # no :instanceName in the path: an instance token is refused
            resp = await client.post("/verify-creds", headers={"apikey": key})
            assert resp.status_code == 401 and resp.json() == UNAUTHORIZED, (key, resp.text)
        bare = await httpx.AsyncClient(transport=client._transport, base_url="http://gateway").post("/verify-creds")
        assert bare.status_code == 401 and bare.json() == UNAUTHORIZED


async def test_verify_creds_carries_facebook_settings(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, FACEBOOK_APP_ID="app-1", FACEBOOK_CONFIG_ID="cfg-2", FACEBOOK_USER_TOKEN="tok")
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, _):
        resp = await client.post("/verify-creds")
        assert resp.json() == {"status": 200, "message": "Credentials are valid", "facebookAppId": "app-1",
                               "facebookConfigId": "cfg-2", "facebookUserToken": "tok"}


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": method,
            "access-control-request-headers": "apikey,content-type"}


async def test_cors_default_any_origin_preflight_without_key(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _):
        await create_instance(client, "a")
        anon = httpx.AsyncClient(transport=client._transport, base_url="http://gateway")
        pre = await anon.options("/instance/connect/a", headers=_preflight("http://manager.example"))
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == "*"
        allowed = {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
        assert {"POST", "GET", "PUT", "DELETE"} <= allowed
        assert {h.strip() for h in pre.headers["access-control-allow-headers"].lower().split(",")} >= {"apikey",
                                                                                                   "content-type"}
        assert "access-control-allow-credentials" not in pre.headers
        # the actual request carries the header too, on success and on a guard's 401
        got = await client.get("/instance/fetchInstances", headers={"origin": "http://manager.example"})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == "*"
        denied = await anon.post("/verify-creds", headers={"origin": "http://manager.example", "apikey": "x"})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "*"


async def test_cors_origin_list_methods_and_credentials(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, CORS_ORIGIN="http://a.example, http://b.example", CORS_METHODS="get,post",
                             CORS_CREDENTIALS=True)
    assert settings.CORS_ORIGIN == ["http://a.example", "http://b.example"]
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, _):
        anon = httpx.AsyncClient(transport=client._transport, base_url="http://gateway")
        pre = await anon.options("/verify-creds", headers=_preflight("http://b.example"))
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "http://b.example"
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")} == {"GET", "POST"}
        put = await anon.options("/verify-creds", headers=_preflight("http://b.example", "DELETE"))
        assert put.status_code == 400  # a method outside CORS_METHODS
        other = await anon.options("/verify-creds", headers=_preflight("http://evil.example"))
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
        simple = await client.post("/verify-creds", headers={"origin": "http://evil.example"})
        assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


async def test_cors_any_origin_with_credentials_echoes_origin(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, CORS_CREDENTIALS=True)
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, _):
        resp = await client.post("/verify-creds", headers={"origin": "http://any.example"})
        headers: Any = resp.headers
        assert headers["access-control-allow-origin"] == "http://any.example"
        assert headers["access-control-allow-credentials"] == "true"
