"""Issue 10 crash suite: SIGKILL of `evolink serve` at random points of linking and of webhook delivery.

Each trial starts `evolink serve` (a child process, SQLite in one data dir kept across trials),
checks that every instance linked so far comes back ``open`` by itself (its creds survived every
earlier kill; the phone's device list is unchanged: no relink), re-links the instance of the
previous trial if its link did not complete before the kill, then creates a fresh instance, asks
for a pairing code, lets the sandbox phone enter it at a random instant and SIGKILLs the gateway:
in a third of the trials at a random instant (before, during or after the link), in a third at the
next moment a webhook request is in flight (the receiver holds requests for a few milliseconds
before reading the body or before answering 200), in a third 0–400 ms after the server stored
the new device, while the gateway finishes the link (creds, 515 restart, first login).

Guarantees checked:
- no lost creds: a device the sandbox stored (the link completed on the server's side) always has
  its creds in the gateway, which comes back ``open`` with them after every later kill; a link cut
  short is simply linkable again on the first try;
- no lost webhook event: after the last trial every outbox row ever committed was delivered and
  its payload reached the receiver; the receiver got nothing that is not a committed row;
- duplicates only those in flight: every repeated payload straddles a kill, at most one per
  instance lane per kill (a lane has one request in flight at a time).

Randomness is seeded (``EVOLINK_CRASH_SEED``, default fixed) and printed on failure; the trial count
is ``EVOLINK_CRASH_TRIALS`` (default 30; about 6 s each on a loaded 2-core machine, most of it the
child's start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    API_KEY,
    GatewayProcess,
    WebhookReceiver,
    gateway_process,
    responder_list,
    sntp_responders,
)

from evolink.sandbox.errors import AdminError
from evolink.sandbox.server import Sandbox
from evolink.store import CredsCipher
from evolink.store.outbox_seal import open_outbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TRIALS = int(os.environ.get("EVOLINK_CRASH_TRIALS", "30"))
SEED = int(os.environ.get("EVOLINK_CRASH_SEED", "20261207"))
OPEN_WITHIN = 30.0
SECRET_KEY = "crash-suite-creds-key"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(link_timeout=5.0) as sb:
        yield sb


@pytest.fixture
async def ntp() -> AsyncIterator[str]:
    async with sntp_responders(2) as responders:
        yield responder_list(responders)


def phone_of(trial: int) -> str:
    return f"1555{trial:07d}"


def serve_env(tmp_path: Path, sb: Sandbox, ntp: str) -> dict[str, str]:
    return {
        "EVOLINK_DATA_DIR": str(tmp_path / "data"), "AUTHENTICATION_API_KEY": API_KEY,
        "EVOLINK_SECRET_KEY": SECRET_KEY,  # known here, so the test can open the sealed outbox rows
        "WA_WEBSOCKET_URL": sb.ws_url, "WA_ROOT_PUBLIC_KEY": sb.root_public_key,
        "LOG_LEVEL": "WARN", "TZ": "UTC", "CLOCK_SKEW_POLICY": "warn", "CLOCK_NTP_SERVERS": ntp,
        "CLOCK_NTP_PACKETS": "2", "CLOCK_NTP_PACKET_SPACING_SECONDS": "0", "CLOCK_NTP_TIMEOUT_SECONDS": "1",
        "CONNECT_WAIT_SECONDS": "10",
        "WEBHOOK_RETRY_INITIAL_DELAY_SECONDS": "0.1", "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "0.5",
        "WEBHOOK_RETRY_MAX_ATTEMPTS": "1000",
    }


def outbox_rows(db: Path) -> list[tuple[int, str, str, dict[str, Any]]]:
    """(id, status, instance, payload) of every outbox row, read-only beside the running gateway;
    payloads are sealed at rest (store/outbox_seal.py) and opened here with the test's key."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT id, status, instance_name, lane, payload FROM outbox ORDER BY id").fetchall()
    cipher = CredsCipher(SECRET_KEY)
    return [(i, s, n, open_outbox(cipher, lane, json.loads(p) if isinstance(p, str) else p, None)[0])
            for i, s, n, lane, p in rows]


def key(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True)


async def until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Bounded wait on a condition the gateway process changes (no event crosses the process line)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def state(gw: GatewayProcess, name: str) -> str:
    resp = await gw.client.get(f"/instance/connectionState/{name}")
    assert resp.status_code == 200, resp.text
    return str(resp.json()["instance"]["state"])


def opened_since(receiver: WebhookReceiver, mark: int, since: float, names: list[str]) -> bool:
    """Each of ``names`` announced ``open`` (connection.update webhook) since delivery ``mark``, in an
    event made after ``since`` (a redelivered ``open`` of the killed process does not count)."""
    seen = {d.body.get("instance") for d in receiver.deliveries[mark:]
            if d.body.get("event") == "connection.update" and d.body["data"].get("state") == "open"
            and datetime.fromisoformat(d.body["date_time"].replace("Z", "+00:00")).timestamp() >= since}
    return all(name in seen for name in names)


Mark = tuple[int, float]  # (deliveries so far, true time) taken before a gateway start


def mark_now(receiver: WebhookReceiver) -> Mark:
    return len(receiver.deliveries), time.time()


async def wait_open(gw: GatewayProcess, receiver: WebhookReceiver, at: Mark, names: list[str]) -> None:
    """Bounded wait for the webhooks saying ``open``, then the API must agree (no polling)."""
    mark, since = at[0], at[1] - 1.0
    try:
        await receiver.wait_for(lambda: opened_since(receiver, mark, since, names), OPEN_WITHIN)
    except TimeoutError:
        raise AssertionError(f"not open after restart: {names}:\n{gw.stderr()[-3000:]}") from None
    for name in names:
        assert await state(gw, name) == "open", name


async def link(gw: GatewayProcess, sb: Sandbox, receiver: WebhookReceiver, name: str, phone: str) -> None:
    body = (await gw.client.get(f"/instance/connect/{name}", params={"number": phone})).json()
    assert body.get("pairingCode"), body
    at = mark_now(receiver)
    await sb.link_code(phone, body["pairingCode"])
    await wait_open(gw, receiver, at, [name])


async def test_sigkill_during_linking_and_webhook_delivery(tmp_path: Path, sandbox: Sandbox, ntp: str) -> None:
    rng = random.Random(SEED)
    receiver = WebhookReceiver(read_after=lambda: rng.choice((0.0, 0.0, 0.01, 0.04)),
                               respond_after=lambda: rng.choice((0.0, 0.0, 0.01, 0.04)))
    await receiver.start()
    env = serve_env(tmp_path, sandbox, ntp)
    db = tmp_path / "data" / "evolink.db"
    linked: dict[str, str] = {}  # instance -> phone, for links the sandbox completed
    devices: dict[str, list[str]] = {}
    pending: tuple[str, str] | None = None  # (instance, phone) whose link the kill cut short
    kills: list[float] = []
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for trial in range(TRIALS):
            at = mark_now(receiver)
            async with gateway_process(env, tmp_path) as gw:
                # every link that completed survived every kill: open again, same device, no relink
                await wait_open(gw, receiver, at, list(linked))
                for name, phone in linked.items():
                    now = [d["jid"] for d in sandbox.get_phone(phone)["devices"]]
                    assert now == devices[name], (SEED, trial, name, now, devices[name])
                if pending is not None:  # a link cut short links again, first try
                    name, phone = pending
                    await link(gw, sandbox, receiver, name, phone)
                    linked[name], devices[name] = phone, [d["jid"] for d in sandbox.get_phone(phone)["devices"]]
                    assert len(devices[name]) == 1, devices[name]
                    pending = None
                name, phone = f"crash{trial}", phone_of(trial)
                sandbox.create_phone(phone)
                resp = await gw.client.post("/instance/create", json={
                    "instanceName": name, "integration": "WHATSAPP-BAILEYS",
                    "webhook": {"url": receiver.url, "enabled": True, "events": []}})
                assert resp.status_code == 201, resp.text
                code = (await gw.client.get(f"/instance/connect/{name}", params={"number": phone})).json()
                assert code.get("pairingCode"), code

                async def enter(code: str = code["pairingCode"], phone: str = phone) -> str:
                    await asyncio.sleep(rng.uniform(0.0, 0.3))  # a random instant for the phone's user
                    try:
                        await sandbox.link_code(phone, code)
                        return "linked"
                    except AdminError as exc:
                        return f"refused {exc.status}"

                entering = asyncio.create_task(enter())
                kind = trial % 3
                if kind == 0:
                    await asyncio.sleep(rng.uniform(0.0, 1.2))  # a random kill point
                elif kind == 1:  # the n-th moment from now a webhook request is held (body unread or unanswered)
                    target = receiver.holds + rng.randint(1, 4)
                    with contextlib.suppress(TimeoutError):
                        await receiver.wait_for(lambda t=target: receiver.holds >= t and receiver.holding.is_set(), 3)
                else:  # just after the server stored the device: the gateway is finishing the link
                    await asyncio.wait({entering}, timeout=15)
                    await asyncio.sleep(rng.uniform(0.0, 0.4))
                kills.append(time.time())
                gw.proc.send_signal(signal.SIGKILL)
                await gw.proc.wait()
                outcome = await asyncio.wait_for(entering, 15)
            has_device = bool(sandbox.get_phone(phone)["devices"])
            outcomes["device stored" if has_device else f"no device ({outcome})"] += 1
            if has_device:
                linked[name] = phone
                devices[name] = [d["jid"] for d in sandbox.get_phone(phone)["devices"]]
            else:
                pending = (name, phone)

        # the last start: everything open, every committed event delivered
        at = mark_now(receiver)
        async with gateway_process(env, tmp_path) as gw:
            await wait_open(gw, receiver, at, list(linked))
            if pending is not None:
                await link(gw, sandbox, receiver, *pending)
            await until(lambda: all(r[1] == "delivered" for r in outbox_rows(db)), 60,
                        "every outbox row delivered")
        rows = outbox_rows(db)
    finally:
        await receiver.stop()

    print(f"crash suite: {TRIALS} kills in {time.monotonic() - started:.0f} s, seed {SEED}: {dict(outcomes)}; "
          f"{len(rows)} events, {len(receiver.deliveries)} deliveries")
    if TRIALS >= 20:  # the random points cover both sides of the link
        assert outcomes["device stored"] >= 3 and sum(outcomes.values()) - outcomes["device stored"] >= 3, outcomes
    committed = Counter(key(p) for _, _, _, p in rows)
    received = Counter(key(d.body) for d in receiver.deliveries)
    missing = committed - received
    assert not missing, f"lost webhook events (seed {SEED}): {[k[:300] for k in list(missing)[:3]]}"
    phantom = set(received) - set(committed)
    assert not phantom, f"deliveries that are no committed row: {[k[:300] for k in list(phantom)[:3]]}"
    # duplicates: each straddles a kill; at most one per lane (instance) per kill
    # (a request whose headers came before a kill may be read after it: its start is what counts)
    arrivals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for d in receiver.deliveries:
        arrivals[key(d.body)].append((d.started_at, d.received_at))
    per_kill: Counter[tuple[int, str]] = Counter()
    duplicates = 0
    for k, times in arrivals.items():
        extra = (received[k] - committed[k])
        if extra <= 0:
            continue
        duplicates += extra
        instance = json.loads(k)["instance"]
        times.sort()
        straddling = [next(i for i, t in enumerate(kills) if first[0] <= t <= again[1])
                      for first, again in itertools.pairwise(times)
                      if any(first[0] <= t <= again[1] for t in kills)]
        assert len(straddling) >= extra, f"a duplicate with no kill between its deliveries (seed {SEED}): {k[:200]}"
        for kill in straddling[:extra]:
            per_kill[(kill, instance)] += 1
    assert all(n == 1 for n in per_kill.values()), per_kill
    print(f"crash suite: {duplicates} duplicate deliveries, all in flight at a kill")
