"""`evolink.client` against the real gateway, engine and sandbox (issue 12): an expired code gets
exactly one new code; a clock refusal is a typed error after one request (no retry storm)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gw_helpers import GLOBAL_KEY, make_settings
from mgr_helpers import served

from evolink.client import AsyncEvolinkClient, Backoff, ClockRefused, EvolinkClient, PairingCode, Unauthorized
from evolink.gateway.engine_factory import real_engine_factory
from evolink.gateway.observe import LinkRefusal
from evolink.sandbox.server import Sandbox

PHONE = "15550001111"
TTL = 4.0
FAST = Backoff(initial=0.5, factor=2, maximum=2, jitter=0.2)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=TTL, qr_ref_count=1, qr_close_grace=0.3, pairing_code_ttl=TTL) as sb:
        sb.create_phone(PHONE)
        yield sb


def engines(sb: Sandbox) -> object:
    return real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                               phone_client="Evolution API", phone_name="Chrome",
                               overrides={"qr_first_ttl": TTL, "pairing_code_ttl": TTL, "reconnect_base": 0.05,
                                          "reconnect_cap": 0.5})


@pytest.mark.slow
async def test_expired_code_gets_exactly_one_new_code(tmp_path: Path, sandbox: Sandbox) -> None:
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key,
                             CONNECT_WAIT_SECONDS=10)
    async with served(settings, engine_factory=engines(sandbox)) as (base, app):
        seen: list[PairingCode] = []
        typed: list[asyncio.Task[object]] = []

        times: list[float] = []

        def on_code(code: PairingCode) -> None:
            seen.append(code)
            times.append(asyncio.get_running_loop().time())
            if code.attempt == 2:  # the user ignores the first code and types the second
                typed.append(asyncio.get_running_loop().create_task(sandbox.link_code(PHONE, code.code)))

        async with AsyncEvolinkClient(base, GLOBAL_KEY) as gw:
            await gw.create_instance("shop")
            linked = await asyncio.wait_for(
                gw.link_by_code("shop", PHONE, on_code=on_code, attempts=3, backoff=FAST, poll=0.25), 40)
        assert [c.attempt for c in seen] == [1, 2] and seen[0].code != seen[1].code
        assert seen[0].grouped[4] == "-" and 0 < (seen[0].expires_in or 0) <= TTL
        assert times[1] - times[0] >= (seen[0].expires_in or 0) - 0.5  # the first code was kept until it expired
        await typed[0]
        assert linked.owner_jid == f"{PHONE}@s.whatsapp.net" and linked.number == f"+{PHONE}" and linked.codes == 2
        rows = await app.state.gateway.store.list_pairing_attempts(
            (await app.state.gateway.store.get_instance("shop")).id)
        codes = [(r.method, r.code_suffix, r.outcome) for r in rows if r.method == "code"]
        # The first code ends `expired` or `superseded` (the gateway's label depends on whether the socket's
        # close or the new code is handled first); either way exactly two codes, the second linked.
        assert [c[:2] for c in codes] == [("code", seen[0].code[-2:]), ("code", seen[1].code[-2:])]
        assert codes[0][2] in ("expired", "superseded") and codes[1][2] == "success"
        # one registration socket per code: no restart storm, no extra code request
        hellos = sum(c["stanzas"].get("companion_hello", 0) for c in sandbox.list_connections())
        assert hellos == 2


class Counting(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


async def test_clock_refusal_is_typed_and_not_retried(tmp_path: Path, sandbox: Sandbox) -> None:
    fix = "on the host: timedatectl set-local-rtc 0 and timedatectl set-ntp true"

    async def refuse(_method: str) -> LinkRefusal:
        return LinkRefusal("Linking refused by the clock guard (CLOCK_SKEW_POLICY=refuse): the host clock is "
                           "59m60.0s behind true time", {"verdict": "local_time_rtc", "fix": fix})

    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key)
    async with served(settings, engine_factory=engines(sandbox), link_guard=refuse) as (base, _app):
        transport = Counting()

        def run() -> ClockRefused:
            with EvolinkClient(base, GLOBAL_KEY, transport=transport) as gw:
                gw.create_instance("late")
                with pytest.raises(ClockRefused) as info:
                    gw.link_by_code("late", PHONE, attempts=5, backoff=FAST, poll=0.1)
                with pytest.raises(ClockRefused):
                    gw.link_by_qr("late", attempts=5, backoff=FAST, poll=0.1)
                return info.value

        err = await asyncio.to_thread(run)
        assert err.fix == fix and err.hint == fix and "CLOCK_SKEW_POLICY=refuse" in str(err)
        assert err.clock["verdict"] == "local_time_rtc"
        assert transport.paths == ["/instance/create", "/instance/connect/late", "/instance/connect/late"]
        assert sandbox.list_connections() == []  # nothing was started


async def test_wrong_key_is_typed(tmp_path: Path, sandbox: Sandbox) -> None:
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key)
    async with served(settings, engine_factory=engines(sandbox)) as (base, _app):
        async with AsyncEvolinkClient(base, GLOBAL_KEY) as gw:
            await gw.create_instance("a")
        async with AsyncEvolinkClient(base, "wrong") as bad:
            with pytest.raises(Unauthorized) as info:
                await bad.link_by_code("a", PHONE)
        assert info.value.status == 401 and "AUTHENTICATION_API_KEY" in info.value.hint
