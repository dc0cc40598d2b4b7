"""Issue 11 acceptance (crash): `evolink serve` is SIGKILLed at random points while it sends through the
API and receives from a phone. After every restart: every message the phone sent is stored and was
delivered by webhook at least once (duplicates only with the same id), and no API send reached the
phone as two messages (a resend after a crash carries the same id, which a phone shows once)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gw_helpers import GLOBAL_KEY, Receiver, create_instance
from test_acceptance import _poll_state, _spawn_serve, _until_up

from evolink.sandbox.server import Sandbox

PHONE = "15550001111"
BOB = "15550002222"
BOB_JID = f"{BOB}@s.whatsapp.net"
TRIALS = int(os.environ.get("EVOLINK_CRASH_TRIALS", "20"))
PER_TRIAL = 10  # sends and receives per trial: 20 trials -> 200 each way


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=30.0, link_timeout=10.0) as sb:
        sb.create_phone(PHONE)
        sb.create_phone(BOB)
        yield sb


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, sb: Sandbox, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await _spawn_serve(tmp_path, sb, port)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _sender(client: httpx.AsyncClient, start: int, n: int, accepted: dict[str, str],
                  progress: asyncio.Queue[int]) -> None:
    for i in range(start, start + n):
        try:
            resp = await client.post("/message/sendText/c", json={"number": BOB, "text": f"s-{i}"})
        except httpx.TransportError:
            return  # the process died under us (the send may or may not have left)
        assert resp.status_code == 201, resp.text
        accepted[f"s-{i}"] = resp.json()["key"]["id"]
        progress.put_nowait(i - start + 1)


async def _answered(progress: asyncio.Queue[int], n: int) -> None:
    while await progress.get() < n:
        pass


@pytest.mark.slow
async def test_sigkill_during_sends_and_receives(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    rng = random.Random(11)
    port = _port()
    accepted: dict[str, str] = {}
    phone_sent: dict[str, str] = {}  # text -> id the phone gave it
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"apikey": GLOBAL_KEY},
                                 timeout=30) as client:
        async with serving(tmp_path, sandbox, port):
            await asyncio.wait_for(_until_up(client), 15)
            await create_instance(client, "c", receiver.url)
            code = (await client.get("/instance/connect/c", params={"number": PHONE})).json()["pairingCode"]
            await sandbox.link_code(PHONE, code)
            await _poll_state(client, "c", "open", 30)
        for trial in range(TRIALS):
            async with serving(tmp_path, sandbox, port) as proc:
                await asyncio.wait_for(_until_up(client), 15)
                await _poll_state(client, "c", "open", 30)
                base = trial * PER_TRIAL
                progress: asyncio.Queue[int] = asyncio.Queue()
                sends = asyncio.create_task(_sender(client, base, PER_TRIAL, accepted, progress))
                for i in range(base, base + PER_TRIAL):  # the phone writes meanwhile (queued while we are down)
                    phone_sent[f"r-{i}"] = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", f"r-{i}")["id"]
                # the kill lands after a random number of answered sends, a random instant later
                kill_after = rng.randint(PER_TRIAL // 2, PER_TRIAL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_answered(progress, kill_after), 30)
                await asyncio.sleep(rng.uniform(0, 0.03))  # a random point inside the next send
                proc.kill()
                await proc.wait()
                await sends
        # a final clean run lets everything settle: offline messages, unannounced rows, pending resends
        async with serving(tmp_path, sandbox, port):
            await asyncio.wait_for(_until_up(client), 15)
            await _poll_state(client, "c", "open", 30)
            wanted = set(phone_sent.values())

            def delivered() -> set[str]:
                return {e["data"]["key"]["id"] for e in receiver.events("messages.upsert")}

            await receiver.wait_for(lambda: wanted <= delivered(), 60)
            found = (await client.post("/chat/findMessages/c", json={"offset": 1000})).json()["messages"]
            stored = {r["key"]["id"]: r for r in found["records"]}
            assert wanted <= set(stored), sorted(wanted - set(stored))[:5]
            for text, mid in phone_sent.items():
                assert stored[mid]["message"]["conversation"] == text
            ups = Counter(e["data"]["key"]["id"] for e in receiver.events("messages.upsert"))
            duplicates = sum(c - 1 for c in ups.values())
            # No API send reached the phone as two messages: one id per text.
            at_bob = [m for m in sandbox.phone_received(BOB) if (m["text"] or "").startswith("s-")]
            ids_per_text: dict[str, set[str]] = {}
            for m in at_bob:
                ids_per_text.setdefault(m["text"], set()).add(m["id"])
            assert all(len(v) == 1 for v in ids_per_text.values()), {k: v for k, v in ids_per_text.items()
                                                                     if len(v) > 1}
            same_id_repeats = len(at_bob) - len(ids_per_text)
            assert all(m["error"] is None for m in at_bob)
            # every send answered 201 reached the phone
            assert {accepted[t] for t in accepted} <= {m["id"] for m in at_bob}
            print(f"\n{TRIALS} kills, {len(phone_sent)} received / {len(accepted)} sends accepted in "
                  f"{time.perf_counter() - t0:.1f} s; webhook duplicates (same id): {duplicates}; "
                  f"same-id repeats at the phone: {same_id_repeats}")
