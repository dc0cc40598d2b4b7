"""Issue 12 acceptance in a real browser: Debian's Chromium driven by Playwright against
`evolink serve --sandbox`, at 360 px wide (a phone), with axe-core checking accessibility.

One gateway process serves the whole story (codes live 12 s in the embedded sandbox, so expiry is
seen quickly), with `CLOCK_SKEW_POLICY=refuse` and three loopback SNTP servers that agree with this
host until the last step, where they move one hour ahead: the guard then finds the host clock
wrong and the page must show the refusal and the fix. Waits are bounded waits on page state.

Set `EVOLINK_UPDATE_SCREENSHOTS=1` to write the screenshots to `docs/manager/` (else to tmp).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mgr_helpers import ServeProcess, serve_sandbox, shifted_sntp

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"
ROOT = Path(__file__).resolve().parents[2]
KEY = "BROWSER-TEST-KEY"
CODE_TTL = 12
WIDTH = 360
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _require(path: Path, what: str) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{what} missing at {path}: scripts/test.sh installs it")
        pytest.skip(f"{what} missing at {path} (scripts/test.sh installs it)")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[ServeProcess, Any]]:
    async with shifted_sntp(3) as (responders, servers):
        env = {"AUTHENTICATION_API_KEY": KEY, "EVOLINK_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARN",
               "CLOCK_SKEW_POLICY": "refuse", "CLOCK_NTP_SERVERS": servers, "CLOCK_NTP_PACKETS": "2",
               "CLOCK_NTP_PACKET_SPACING_SECONDS": "0", "CLOCK_NTP_TIMEOUT_SECONDS": "1",
               "CLOCK_LINK_MAX_AGE_SECONDS": "1", "CLOCK_CHECK_INTERVAL_SECONDS": "2", "CONNECT_WAIT_SECONDS": "10", "TZ": "UTC"}
        async with serve_sandbox(env, tmp_path, "--sandbox-code-ttl", str(CODE_TTL)) as gw:
            yield gw, responders


class Shots:
    def __init__(self, page: Any, tmp: Path) -> None:
        self.page = page
        self.dir = ROOT / "docs" / "manager" if os.environ.get("EVOLINK_UPDATE_SCREENSHOTS") else tmp / "shots"
        self.dir.mkdir(parents=True, exist_ok=True)

    async def __call__(self, name: str) -> None:
        await self.page.screenshot(path=str(self.dir / f"{name}.png"), full_page=True)


async def fits_width(page: Any) -> None:
    """Nothing wider than the phone's screen (no horizontal scrolling)."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"page is {width} px wide at a {WIDTH} px viewport"


async def no_critical_axe(page: Any, where: str) -> None:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    critical = [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in result["violations"]
                if v["impact"] in ("critical", "serious")]
    assert not critical, f"axe-core critical or serious violations on {where}: {critical}"


async def sign_in(page: Any, base: str, key: str) -> None:
    await page.goto(f"{base}/manager/")
    await page.wait_for_selector("#view-signin:not([hidden])")
    assert await page.input_value("#server") == base
    await page.fill("#apikey", key)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#view-instances:not([hidden])")
    await page.wait_for_selector("#live.on")  # the SSE stream is open


async def create_from_page(page: Any, name: str) -> None:
    await page.fill("#new-name", name)
    await page.click("#create-form button[type=submit]")
    await page.wait_for_selector("#view-link:not([hidden])")
    await page.wait_for_function("n => document.getElementById('link-title').textContent === n", arg=name)


async def code_on_page(page: Any, number: str, previous: str | None = None) -> str:
    await page.fill("#number", number)
    await page.click("#get-code")
    return await next_code(page, previous)


async def next_code(page: Any, previous: str | None, within: float = 30) -> str:
    handle = await page.wait_for_function(
        """prev => { const c = document.getElementById('pairing-code').dataset.code;
                     return c && /^[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(c) && c !== prev ? c : false; }""",
        arg=previous, timeout=within * 1000)
    code: str = await handle.json_value()
    return code


async def phone(admin: httpx.AsyncClient, number: str) -> None:
    resp = await admin.post("/admin/phones", json={"phone": number})
    assert resp.status_code == 201, resp.text


async def until_refused(api: httpx.AsyncClient, within: float = 30.0) -> None:
    """Bounded wait for the guard's background round that sees the shifted NTP servers."""
    async def loop() -> None:
        while True:
            if not (await api.get("/manager/api/clock")).json()["allowed"]:
                return
            await asyncio.sleep(0.5)  # another process's state: its API is the only signal

    await asyncio.wait_for(loop(), within)


async def test_manager_in_a_real_browser(gateway: tuple[ServeProcess, Any], tmp_path: Path) -> None:
    _require(CHROMIUM, "Debian's chromium")
    _require(AXE, "axe-core (npm ci in tests/manager)")
    from playwright.async_api import async_playwright

    gw, sntp = gateway
    async with async_playwright() as pw, httpx.AsyncClient(base_url=gw.admin_url, timeout=30) as admin, \
            httpx.AsyncClient(base_url=gw.url, headers={"apikey": KEY}, timeout=30) as api:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": WIDTH, "height": 780}, locale="en-US")
            context.set_default_timeout(20_000)
            page = await context.new_page()
            page.on("dialog", lambda d: d.accept())
            shot = Shots(page, tmp_path)

            # --- sign in with the global key; the sign-in form, then the (empty) instances page
            await page.goto(f"{gw.url}/manager/")
            await page.wait_for_selector("#view-signin:not([hidden])")
            await no_critical_axe(page, "sign-in")
            await fits_width(page)
            await shot("signin")
            await sign_in(page, gw.url, KEY)

            # --- link by code: the countdown decreases, the phone types the code, the page says linked
            await phone(admin, "15550001111")
            await create_from_page(page, "shop")
            code = await code_on_page(page, "+1 555 000 1111")
            first = int(await page.get_attribute("#countdown", "data-seconds") or 0)
            assert 0 < first <= CODE_TTL
            await page.wait_for_function(
                "s => Number(document.getElementById('countdown').dataset.seconds) < s", arg=first)
            steps = await page.inner_text("#steps")
            assert "Link with phone number instead" in steps and code in steps and "+1 555 000 1111" in steps
            await fits_width(page)
            await no_critical_axe(page, "link by code")
            await shot("code")
            resp = await admin.post("/admin/phones/15550001111/link-code", json={"code": code})
            assert resp.status_code == 200, resp.text
            await page.wait_for_selector("#success:not([hidden])")
            success = await page.inner_text("#success")
            assert re.fullmatch(r"Linked as \+1 555 000 1111 \(Chrome on Mac OS\) in \d+\.\d s", success), success
            await page.wait_for_selector("#history tbody tr[data-outcome=success]")
            await shot("linked")

            # --- a code nobody types expires: the page says so and shows the new one
            await phone(admin, "15550002222")
            await page.click("#back")
            await page.wait_for_selector("#view-instances:not([hidden])")
            await page.wait_for_selector("[data-instance=shop] [data-state=open]")
            await create_from_page(page, "stall")
            old = await code_on_page(page, "15550002222")
            new = await next_code(page, old, within=CODE_TTL + 10)
            await page.wait_for_selector("#prompt:not([hidden])[data-reason=expired_new]")
            assert new != old
            assert "Here is a new one" in await page.inner_text("#prompt-text")
            await shot("expired")
            await page.wait_for_selector("#history tbody tr[data-outcome=expired], #history tbody tr[data-outcome=superseded]")
            (await api.delete("/instance/logout/stall")).raise_for_status()

            # --- the server refuses the code request: the reason, and an automatic retry with the wait shown
            resp = await admin.put("/admin/faults", json={"companion_hello_error": {"code": 429, "text": "rate-overlimit"}})
            assert resp.status_code == 200, resp.text
            await page.click("#back")
            await create_from_page(page, "cafe")
            await page.fill("#number", "15550005555")
            await page.click("#get-code")
            await page.wait_for_selector("#prompt:not([hidden])[data-reason=error]")
            assert "rate-overlimit" in await page.inner_text("#prompt-text")
            await page.wait_for_function(
                "document.getElementById('retry-wait').textContent.startsWith('Trying again automatically in')")
            await shot("retry")
            (await admin.put("/admin/faults", json={})).raise_for_status()
            await next_code(page, None)  # the automatic retry got the code, nobody clicked
            assert await page.is_hidden("#prompt"), (await page.get_attribute("#prompt", "data-reason"), await page.inner_text("#prompt"))
            (await api.delete("/instance/logout/cafe")).raise_for_status()

            # --- link by QR: the image with "QR n of 30", the phone scans it
            await phone(admin, "15550003333")
            await page.click("#back")
            await create_from_page(page, "kiosk")
            await page.click("#tab-qr")
            await page.click("#get-qr")
            await page.wait_for_selector("#qr-box:not([hidden])")
            qr = await page.get_attribute("#qr-img", "data-code")
            assert qr and qr.count(",") == 3
            assert await page.inner_text("#qr-count") == "QR 1 of 30"
            assert (await page.get_attribute("#qr-img", "alt") or "").startswith("QR code to scan")
            await fits_width(page)
            await no_critical_axe(page, "link by QR")
            await shot("qr")
            # the QR rotates (here: its registration ends after 12 s and the gateway opens a new one):
            # the page replaces the image from the live stream, and counts it
            await page.wait_for_function(
                "q => { const i = document.getElementById('qr-img'); return i.dataset.code && i.dataset.code !== q; }",
                arg=qr, timeout=(CODE_TTL + 10) * 1000)
            assert await page.inner_text("#qr-count") == "QR 2 of 30"
            qr = await page.get_attribute("#qr-img", "data-code")
            resp = await admin.post("/admin/phones/15550003333/scan", json={"qr": qr})
            assert resp.status_code == 200, resp.text
            await page.wait_for_selector("#success:not([hidden])")
            assert "Linked as +1 555 000 3333" in await page.inner_text("#success")
            # From now on the NTP majority says the host clock is an hour behind. A server is polled at
            # most every 15 s (RFC 4330), so the guard sees it on a later round: meanwhile, the rest.
            for responder in sntp:
                responder.shift = 3600.0

            # --- the instances page, then the same page in the two other languages
            await page.click("#back")
            await page.wait_for_selector("[data-instance=kiosk] [data-state=open]")
            await fits_width(page)
            await no_critical_axe(page, "instances")
            await shot("instances")
            await page.select_option("#lang", "pt-BR")
            await page.wait_for_function("document.documentElement.lang === 'pt-BR'")
            assert await page.inner_text("#view-instances h2") == "Instâncias"
            await page.select_option("#lang", "zh-CN")
            assert await page.inner_text("#view-instances h2") == "实例"
            await shot("instances-zh")
            await page.select_option("#lang", "en")

            # --- an instance token sees only its instance
            rows = (await api.get("/instance/fetchInstances")).json()
            token = next(r["token"] for r in rows if r["name"] == "kiosk")
            solo = await context.browser.new_context(viewport={"width": WIDTH, "height": 780}, locale="pt-BR")
            solo_page = await solo.new_page()
            await sign_in(solo_page, gw.url, token)
            await solo_page.wait_for_selector("[data-instance=kiosk]")
            names = await solo_page.eval_on_selector_all("[data-instance]", "els => els.map(e => e.dataset.instance)")
            assert names == ["kiosk"]
            assert await solo_page.is_hidden("#create-form")
            assert await solo_page.inner_text("#view-instances h2") == "Instâncias"  # from the browser's language
            await solo.close()

            # --- the clock goes wrong: linking is refused, the page says why and how to fix it
            await until_refused(api)
            await phone(admin, "15550004444")
            await create_from_page(page, "late")
            await page.fill("#number", "15550004444")
            await page.click("#get-code")
            await page.wait_for_selector("#prompt:not([hidden])[data-reason=clock_refused]")
            assert "clock" in (await page.inner_text("#prompt-text")).lower()
            fix = await page.inner_text("#prompt-fix")
            assert "timedatectl" in fix, fix  # the doctor's fix text
            await page.wait_for_selector("#clock-panel-link [data-clock=refused]")
            assert "CLOCK_SKEW_POLICY=refuse" in await page.inner_text("#clock-panel-link")
            await page.wait_for_selector("#history tbody tr[data-outcome=refused_clock]")
            assert await page.is_hidden("#code-box")
            await fits_width(page)
            await shot("clock-refused")

            # --- delete from the page (confirmed in the browser's dialog): back to the list, gone
            await page.click("#act-delete")
            await page.wait_for_selector("#view-instances:not([hidden])")
            await page.wait_for_selector("[data-instance=kiosk]")
            assert await page.query_selector("[data-instance=late]") is None
            assert (await api.get("/instance/connectionState/late")).status_code == 404
        finally:
            await browser.close()
