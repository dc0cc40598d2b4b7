"""The admin HTTP API (stable contract), persistence in the data dir, and the CLI."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from evolink.sandbox.server import Sandbox


async def test_phone_lifecycle_and_errors(sandbox: Sandbox, admin: httpx.AsyncClient) -> None:
    res = await admin.post("/admin/phones", json={"phone": "15550003333"})
    assert res.status_code == 201
    phone = res.json()
    assert phone["phone"] == "15550003333" and phone["jid"] == "15550003333@s.whatsapp.net"
    assert phone["lid"].endswith("@lid") and len(bytes.fromhex(phone["identity_public_key"])) == 32
    assert phone["devices"] == []
    assert (await admin.get("/admin/phones/15550003333")).json()["lid"] == phone["lid"]
    assert [p["phone"] for p in (await admin.get("/admin/phones")).json()] == ["15550003333"]

    cases = [
        (admin.post("/admin/phones", json={"phone": "15550003333"}), 409, "phone_exists"),
        (admin.post("/admin/phones", json={"phone": "0123"}), 400, "invalid_phone"),
        (admin.post("/admin/phones", json={}), 400, "missing_field"),
        (admin.post("/admin/phones", content=b"{nope", headers={"content-type": "application/json"}), 400, "bad_request"),
        (admin.get("/admin/phones/15559998888"), 404, "phone_not_found"),
        (admin.post("/admin/phones/15550003333/scan", json={"qr": "garbage"}), 400, "invalid_qr"),
        (admin.post("/admin/phones/15550003333/link-code", json={"code": "ABCD1234"}), 404, "no_pending_registration"),
        (admin.post("/admin/phones/15550003333/link-code", json={"code": "ABC0"}), 400, "invalid_code"),
        (admin.delete("/admin/phones/15550003333/devices/4"), 404, "device_not_found"),
        (admin.post("/admin/connections/c999/kick", json={"code": 515}), 404, "connection_not_found"),
        (admin.post("/admin/connections/c1/kick", json={"code": 999}), 400, "invalid_code"),
        (admin.put("/admin/clock", json={"offset_seconds": "soon"}), 400, "invalid_offset"),
        (admin.put("/admin/faults", json={"latency_ms": -1}), 400, "invalid_faults"),
        (admin.get("/admin/nothing"), 404, "not_found"),
        (admin.delete("/admin/phones"), 405, "method_not_allowed"),
    ]
    for request, status, error in cases:
        res = await request
        assert (res.status_code, res.json()["error"]) == (status, error), res.text
        assert res.headers["content-type"] == "application/json" and "date" in res.headers


async def test_scan_of_a_well_formed_but_unknown_qr(sandbox: Sandbox, admin: httpx.AsyncClient) -> None:
    await admin.post("/admin/phones", json={"phone": "15550003333"})
    key = "A" * 43 + "="
    res = await admin.post("/admin/phones/15550003333/scan", json={"qr": f"2@nothere,{key},{key},{key},1"})
    assert res.status_code == 404 and res.json()["error"] == "unknown_ref"


async def test_info_faults_and_clock(sandbox: Sandbox, admin: httpx.AsyncClient) -> None:
    info = (await admin.get("/admin")).json()
    assert info["ws_url"] == sandbox.ws_url and info["root_public_key"] == sandbox.root_public_key
    res = await admin.put("/admin/faults", json={"latency_ms": 5, "drop_after_frames": 3})
    assert res.json() == {"latency_ms": 5, "drop_after_frames": 3, "companion_hello_error": None}
    assert sandbox.faults.drop_after_frames == 3
    assert (await admin.get("/admin/faults")).json()["latency_ms"] == 5
    hello = {"code": 429, "text": "rate-overlimit"}
    res = await admin.put("/admin/faults", json={"companion_hello_error": hello})
    assert res.json() == {"latency_ms": 0, "drop_after_frames": None, "companion_hello_error": hello}
    assert sandbox.faults.companion_hello_error is not None and sandbox.faults.companion_hello_error.code == 429
    for bad in ({"code": 429}, {"code": 200, "text": "x"}, {"code": True, "text": "x"}, {"code": 500, "text": ""},
                "429", {"code": 429, "text": "x", "extra": 1}):
        res = await admin.put("/admin/faults", json={"companion_hello_error": bad})
        assert res.status_code == 400 and res.json()["error"] == "invalid_faults", bad
    assert sandbox.faults.companion_hello_error is not None  # a refused PUT changes nothing
    assert sandbox.set_faults()["companion_hello_error"] is None
    res = await admin.put("/admin/clock", json={"offset_seconds": 120})
    assert res.json()["offset_seconds"] == 120 and sandbox.clock.offset == 120
    res = await admin.put("/admin/cert", json={"not_before": -10, "not_after": 10})
    assert res.json() == {"not_before": -10, "not_after": 10}


async def test_state_and_root_key_persist_in_the_data_dir(tmp_path: Path) -> None:
    async with Sandbox.start(data_dir=tmp_path) as sb:
        root = sb.root_public_key
        created = sb.create_phone("15550004444")
    async with Sandbox.start(data_dir=tmp_path) as sb:
        assert sb.root_public_key == root
        assert sb.get_phone("15550004444")["lid"] == created["lid"]
    async with Sandbox.start() as sb:  # memory mode: a fresh root every time
        assert sb.root_public_key != root
    assert (tmp_path / "sandbox.db").exists()


async def test_cli_prints_one_json_line_and_serves(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "sandbox", "--host", "127.0.0.1", "--port", "0", "--tls",
        "--data", str(tmp_path), "--clock-offset", "-60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        info = json.loads(line)
        assert set(info) == {"ws_url", "admin_url", "root_public_key"}
        assert info["ws_url"].startswith("wss://127.0.0.1:") and info["ws_url"].endswith("/ws/chat")
        assert len(bytes.fromhex(info["root_public_key"])) == 32
        async with httpx.AsyncClient(base_url=info["admin_url"]) as http:
            clock = (await http.get("/admin/clock")).json()
            assert clock["offset_seconds"] == -60
            assert (await http.post("/admin/phones", json={"phone": "15550005555"})).status_code == 201
        assert (tmp_path / "tls-cert.pem").exists()
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_cli_rejects_conflicting_storage_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from evolink.sandbox.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--memory", "--data", "/tmp/x"])
    assert exc.value.code == 2


@pytest.mark.parametrize(("raw", "status"), [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET /admin HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"POST /admin/phones HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"POST /admin/phones HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
])
async def test_malformed_http_gets_a_clean_error(sandbox: Sandbox, raw: bytes, status: int) -> None:
    host, port = sandbox.admin_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    assert head.split()[1] == str(status).encode()
    writer.close()
    async with httpx.AsyncClient(base_url=sandbox.admin_url) as http:  # still serving
        assert (await http.get("/admin")).status_code == 200
