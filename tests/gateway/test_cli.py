"""`evolink serve` / `evolink demo` and configuration handling."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from pathlib import Path

import httpx
import pytest

from evolink.api import demo_cli, serve_cli
from evolink.api.apikey import resolve_api_key
from evolink.api.settings import ConfigError, load_settings


@pytest.mark.parametrize(("env", "needle"), [
    ({"SERVER_PORT": "eighty"}, "SERVER_PORT"),
    ({"DATABASE_PROVIDER": "mysql"}, "DATABASE_PROVIDER"),
    ({"DATABASE_PROVIDER": "postgresql"}, "DATABASE_CONNECTION_URI"),
    ({"CONNECT_WAIT_SECONDS": "0"}, "CONNECT_WAIT_SECONDS"),
    ({"QRCODE_COLOR": "green"}, "QRCODE_COLOR"),
    ({"WEBHOOK_EVENTS_CONNECTION_UPDATE": "maybe"}, "WEBHOOK_EVENTS_CONNECTION_UPDATE"),
    ({"WEBHOOK_GLOBAL_ENABLED": "true"}, "WEBHOOK_GLOBAL_URL"),
    ({"WA_ROOT_PUBLIC_KEY": "abcd"}, "WA_ROOT_PUBLIC_KEY"),
])
def test_bad_config_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], env: dict[str, str],
                                                    needle: str) -> None:
    monkeypatch.setenv("EVOLINK_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    assert str(info.value).startswith(needle) and "\n" not in str(info.value)
    assert serve_cli.main(["--env-file", str(tmp_path / "none.env")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"evolink serve: {needle}") and len(err.splitlines()) == 1


def test_dotenv_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SERVER_PORT", "QRCODE_LIMIT", "WEBHOOK_EVENTS_QRCODE_UPDATED", "CONNECT_WAIT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    env = tmp_path / ".env"
    env.write_text("SERVER_PORT=9090\nQRCODE_LIMIT=5\nWEBHOOK_EVENTS_QRCODE_UPDATED=true\n")
    s = load_settings(env_file=env)
    assert s.SERVER_PORT == 9090 and s.QRCODE_LIMIT == 5 and s.global_event_enabled("QRCODE_UPDATED")
    assert s.CONNECT_WAIT_SECONDS == 10 and s.DATABASE_PROVIDER == "sqlite"
    assert s.WEBHOOK_RETRY_MAX_ATTEMPTS == 10 and s.WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES == [400, 401, 403, 404, 422]
    assert s.QRCODE_COLOR == "#198754" and s.DEL_INSTANCE is False


def test_api_key_generated_once_and_kept(tmp_path: Path) -> None:
    first = resolve_api_key(None, tmp_path)
    assert first.source == "generated" and len(first.value) >= 32
    assert stat.S_IMODE(os.stat(tmp_path / "apikey").st_mode) == 0o600
    again = resolve_api_key(None, tmp_path)
    assert again.source == "file" and again.value == first.value
    assert resolve_api_key("mine", tmp_path).value == "mine"


def test_demo_links_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "pairing code ******" in out and "state=open ... ok" in out and "linked and cleaned up" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_with_sandbox_prints_key_and_admin_url(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "EVOLINK_DATA_DIR": str(tmp_path), "CLOCK_NTP_SERVERS": "127.0.0.1:9",
           "LOG_LEVEL": "ERROR"}
    env.pop("AUTHENTICATION_API_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port),
        "--env-file", str(tmp_path / "none.env"), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    try:
        async def read_until_ready() -> None:
            assert proc.stdout is not None
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "serve exited early"
                lines.append(line)
                if "gateway on" in line:
                    return

        await asyncio.wait_for(read_until_ready(), 30)
        text = "".join(lines)
        key = next(ln.split("=", 1)[1].strip() for ln in lines if "AUTHENTICATION_API_KEY=" in ln)
        assert (tmp_path / "apikey").read_text().strip() == key
        assert "sandbox admin URL http://127.0.0.1:" in text
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async def root() -> httpx.Response:
                while True:
                    try:
                        return await client.get("/")
                    except httpx.ConnectError:
                        await asyncio.sleep(0.05)  # uvicorn binds right after printing the banner

            resp = await asyncio.wait_for(root(), 15)
            assert resp.json()["message"] == "Welcome to the Evolution API, it is working!"
            assert (await client.get("/instance/fetchInstances", headers={"apikey": key})).json() == []
            assert (await client.get("/instance/fetchInstances", headers={"apikey": "x"})).status_code == 401
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
