"""Creds sealed by default, file modes, key loss/mismatch, `evolink secrets rotate` (issue 10 item 4)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from gw_helpers import make_settings, running_gateway

from evolink.store import CredsCipher, Database, SealError, Store, open_database, sqlite_url
from evolink.store.creds_key import SecretKeyError
from evolink.wa.creds import Creds

CLIENT = "evolution"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _instance_with_creds(db: Database, cipher: CredsCipher, name: str = "a") -> tuple[str, Creds]:
    store = Store(db, cipher)
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name=name, token=f"T-{name}", integration="WHATSAPP-BAILEYS",
                                number=None, client_name=CLIENT, settings={}, webhook=None)
    creds = Creds.new()
    await store.save_creds(iid, creds.to_dict())
    return iid, creds


async def _raw(data_dir: Path, iid: str) -> str | None:
    db = open_database(sqlite_url(data_dir))
    try:
        return await Store(db).raw_creds(iid)
    finally:
        await db.dispose()


async def _old_install(data_dir: Path, cipher: CredsCipher, name: str = "a") -> tuple[str, Creds]:
    """A database as an older evolink left it (no key file)."""
    db = open_database(sqlite_url(data_dir))
    try:
        await db.migrate()
        return await _instance_with_creds(db, cipher, name)
    finally:
        await db.dispose()


def _settings(tmp_path: Path, **env: Any) -> Any:
    return make_settings(tmp_path, **env)


async def test_first_start_seals_by_default_with_private_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = settings.EVOLINK_DATA_DIR
    assert settings.EVOLINK_SECRET_KEY is None
    async with running_gateway(settings) as (_client, app):
        store = app.state.gateway.store
        iid = str(uuid.uuid4())
        await store.create_instance(instance_id=iid, name="a", token="T", integration="WHATSAPP-BAILEYS",
                                    number=None, client_name=CLIENT, settings={}, webhook=None)
        creds = Creds.new()
        await store.save_creds(iid, creds.to_dict())
        raw = await store.raw_creds(iid)
    assert raw is not None and raw.startswith("enc:v1:")
    assert base64.b64encode(creds.noise_private).decode() not in raw
    assert base64.b64encode(creds.adv_secret).decode() not in raw
    assert _mode(data) == 0o700
    assert _mode(data / "secret.key") == 0o600
    for name in ("evolink.db", "evolink.db-wal", "evolink.db-shm"):
        if (data / name).exists():
            assert _mode(data / name) == 0o600, name
    assert (data / "evolink.db").exists()
    # the next start reuses the key: the row opens
    async with running_gateway(settings) as (_client, app):
        assert Creds.from_dict(await app.state.gateway.store.load_creds(iid)) == creds


async def test_plaintext_rows_of_an_older_install_are_sealed_on_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = settings.EVOLINK_DATA_DIR
    data.mkdir(mode=0o755)
    iid, creds = await _old_install(data, CredsCipher(None))
    assert (await _raw(data, iid) or "").startswith("{")
    os.chmod(data / "evolink.db", 0o644)
    async with running_gateway(settings) as (_client, app):
        assert Creds.from_dict(await app.state.gateway.store.load_creds(iid)) == creds
    assert (await _raw(data, iid) or "").startswith("enc:v1:")
    assert _mode(data) == 0o700 and _mode(data / "evolink.db") == 0o600


async def test_lost_key_file_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = settings.EVOLINK_DATA_DIR
    async with running_gateway(settings):
        pass
    key = (data / "secret.key").read_text()
    iid, _ = await _old_install(data, CredsCipher(key.strip()))
    before = await _raw(data, iid)
    (data / "secret.key").unlink()
    with pytest.raises(SecretKeyError, match=r"no key: EVOLINK_SECRET_KEY is unset and .*secret.key is missing"):
        async with running_gateway(settings):
            pass
    assert not (data / "secret.key").exists()  # never replaced by a fresh key
    assert await _raw(data, iid) == before


async def test_wrong_key_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, EVOLINK_SECRET_KEY="right")
    data = settings.EVOLINK_DATA_DIR
    iid, creds = await _old_install(data, CredsCipher("right"))
    before = await _raw(data, iid)
    with pytest.raises(SecretKeyError, match=r"\(a\) do not open with the key from EVOLINK_SECRET_KEY"):
        async with running_gateway(_settings(tmp_path, EVOLINK_SECRET_KEY="wrong")):
            pass
    assert await _raw(data, iid) == before
    async with running_gateway(settings) as (_client, app):
        assert Creds.from_dict(await app.state.gateway.store.load_creds(iid)) == creds


def _cli(args: list[str], data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("EVOLINK_", "DATABASE_"))}
    full.update({"EVOLINK_DATA_DIR": str(data), "AUTHENTICATION_API_KEY": "K", **env})
    return subprocess.run([sys.executable, "-m", "evolink", *args, "--env-file", "/nonexistent"], env=full,
                          capture_output=True, text=True, timeout=60)


async def test_secrets_rotate_reseals_under_a_new_key_and_keeps_the_old(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = settings.EVOLINK_DATA_DIR
    async with running_gateway(settings):
        pass
    old_key = (data / "secret.key").read_text().strip()
    ids = [await _old_install(data, CredsCipher(old_key), name) for name in ("a", "b")]
    out = _cli(["secrets", "rotate"], data)
    assert out.returncode == 0, out.stderr
    assert "re-sealed the creds of 2 instance(s)" in out.stdout
    new_key = (data / "secret.key").read_text().strip()
    assert new_key != old_key and (data / "secret.key.old").read_text().strip() == old_key
    assert _mode(data / "secret.key") == 0o600 and _mode(data / "secret.key.old") == 0o600
    assert not (data / "secret.key.new").exists()
    for iid, creds in ids:
        raw = await _raw(data, iid)
        assert raw is not None
        assert Creds.from_dict(json.loads(CredsCipher(new_key).open(raw, iid))) == creds
        with pytest.raises(SealError):
            CredsCipher(old_key).open(raw, iid)
    async with running_gateway(settings) as (_client, app):
        assert Creds.from_dict(await app.state.gateway.store.load_creds(ids[0][0])) == ids[0][1]


async def test_rotation_interrupted_after_commit_is_completed_at_start(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    data = settings.EVOLINK_DATA_DIR
    async with running_gateway(settings):
        pass
    new_key = "the-next-key"
    # as if the process died between the re-seal commit and the key-file swap
    (data / "secret.key.new").write_text(new_key + "\n")
    iid, creds = await _old_install(data, CredsCipher(new_key))
    async with running_gateway(settings) as (_client, app):
        assert Creds.from_dict(await app.state.gateway.store.load_creds(iid)) == creds
    assert (data / "secret.key").read_text().strip() == new_key
    assert not (data / "secret.key.new").exists()


def test_serve_refuses_a_wrong_key_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    import asyncio

    asyncio.run(_old_install(data, CredsCipher("right")))
    out = _cli(["serve", "--port", "0"], data, EVOLINK_SECRET_KEY="wrong")
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "EVOLINK_SECRET_KEY" in lines[0] and "nothing was changed" in lines[0], lines
    assert "Traceback" not in out.stderr
