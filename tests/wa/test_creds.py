from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from evolink.wa.creds import Creds, CredsError, FileCredsStore, MemoryCredsStore
from evolink.wire.crypto import KeyPair, verify


def test_new_creds_are_consistent_and_round_trip_through_json() -> None:
    creds = Creds.new()
    assert KeyPair.from_private(creds.noise_private).public == creds.noise_public
    assert KeyPair.from_private(creds.identity_private).public == creds.identity_public
    assert verify(creds.identity_public, b"\x05" + creds.signed_pre_key_public, creds.signed_pre_key_signature)
    assert 0 < creds.registration_id < 16384 and not creds.registered
    creds.me_jid = "15550001111:7@s.whatsapp.net"
    creds.account = b"acct"
    creds.pre_keys = {1: os.urandom(32), 2: os.urandom(32)}
    text = creds.to_json()
    json.loads(text)  # plain JSON
    back = Creds.from_json(text)
    assert back == creds and back.registered


def test_repr_hides_private_material() -> None:
    creds = Creds.new()
    text = repr(creds)
    for secret in (creds.noise_private, creds.identity_private, creds.adv_secret):
        assert secret.hex() not in text and repr(secret) not in text


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("noise_private"),
        lambda d: d.update(noise_public="!!notbase64"),
        lambda d: d.update(identity_public="AAAA"),  # wrong length
        lambda d: d.update(registration_id="7"),
        lambda d: d.update(me_jid=5),
        lambda d: d.update(pre_keys={"x": "AAAA"}),
        lambda d: d.update(schema=99),
    ],
)
def test_malformed_creds_raise_typed_error(mutate) -> None:  # type: ignore[no-untyped-def]
    data = Creds.new().to_dict()
    mutate(data)
    with pytest.raises(CredsError):
        Creds.from_dict(data)


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(CredsError):
        Creds.from_json("{not json")
    with pytest.raises(CredsError):
        Creds.from_json("[1, 2]")


async def test_memory_store_isolated_copies() -> None:
    store = MemoryCredsStore()
    assert await store.load() is None
    creds = Creds.new()
    await store.save(creds)
    creds.push_name = "mutated after save"
    loaded = await store.load()
    assert loaded is not None and loaded.push_name is None
    await store.clear()
    assert await store.load() is None and store.empty


async def test_file_store_atomic_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "creds.json"
    store = FileCredsStore(path)
    assert await store.load() is None
    creds = Creds.new()
    await store.save(creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await store.load() == creds
    assert [p.name for p in path.parent.iterdir()] == ["creds.json"]  # no temp files left behind
    await store.clear()
    await store.clear()  # idempotent
    assert await store.load() is None
    path.write_text("garbage")
    with pytest.raises(CredsError):
        await store.load()
