"""Which key seals this installation's creds, checked against the rows before anything runs.

``prepare_creds_key`` is called once at start (``evolink serve`` and the app's lifespan):

1. the key is ``EVOLINK_SECRET_KEY`` if set, else ``<data dir>/secret.key``; a key is generated into
   that file only when no sealed row exists (a lost key file is never silently replaced);
2. every creds row of this installation (``DATABASE_CONNECTION_CLIENT_NAME``) must open with it. A
   rotation interrupted after its commit is completed (``secret.key.new`` opens them); otherwise the
   start is refused with a message naming the fix, and nothing is written;
3. plaintext rows left by older installs (creds and outbox) are sealed, all in one transaction.

``rotate_creds_key`` (``evolink secrets rotate``) re-seals every row (creds and outbox) under a fresh
key in one transaction, after the new key is safely on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from evolink.store import keyfile
from evolink.store.db import Database
from evolink.store.models import EngineSession, Instance, OutboxEvent
from evolink.store.outbox_seal import is_sealed, open_outbox, seal_outbox
from evolink.store.sealing import PREFIX, CredsCipher, SealError

log = logging.getLogger("evolink.store.creds_key")


class SecretKeyError(Exception):
    """The creds key is missing or does not open the stored creds; ``str()`` names the fix."""


@dataclass(frozen=True, slots=True)
class CredsKey:
    cipher: CredsCipher
    source: str  # "env" | "file" | "generated"
    path: Path | None
    sealed_now: int = 0  # plaintext rows sealed at this start
    recovered_rotation: bool = False


async def _rows(db: Database, client_name: str) -> list[tuple[str, str, str]]:
    """(instance id, instance name, stored creds) of this installation's creds rows."""
    q = (select(EngineSession.instance_id, Instance.name, EngineSession.creds)
         .join(Instance, Instance.id == EngineSession.instance_id)
         .where(Instance.client_name == client_name).order_by(Instance.name))
    async with db.sessions() as s:
        return [(str(a), str(b), str(c)) for a, b, c in (await s.execute(q)).all()]


def _unreadable(rows: list[tuple[str, str, str]], cipher: CredsCipher) -> list[str]:
    bad = []
    for iid, name, stored in rows:
        if not stored.startswith(PREFIX):
            continue
        try:
            cipher.open(stored, iid)
        except SealError:
            bad.append(name)
    return bad


async def reseal(db: Database, old: CredsCipher, new: CredsCipher, client_name: str, *,
                 plaintext_only: bool = False) -> int:
    """Re-seal this installation's creds rows from ``old`` to ``new`` in one transaction.

    Raises ``SealError`` (and changes nothing) if any row does not open with ``old``.
    """
    q = (select(EngineSession).join(Instance, Instance.id == EngineSession.instance_id)
         .where(Instance.client_name == client_name).with_for_update())
    changed = 0
    async with db.sessions.begin() as s:
        for row in (await s.execute(q)).scalars():
            if plaintext_only and row.creds.startswith(PREFIX):
                continue
            row.creds = new.seal(old.open(row.creds, row.instance_id), row.instance_id)
            changed += 1
        await _reseal_outbox(s, old, new, client_name, plaintext_only=plaintext_only)
    return changed


async def _reseal_outbox(s: AsyncSession, old: CredsCipher, new: CredsCipher, client_name: str, *,
                         plaintext_only: bool) -> int:
    """Seal (or re-seal) this installation's outbox rows, in the caller's transaction. A sealed row that
    does not open with ``old`` is left as it is (the worker marks it failed with the reason): a stale
    row never blocks a rotation, and nothing is overwritten."""
    q = select(OutboxEvent).where(OutboxEvent.client_name == client_name)
    if not plaintext_only:
        # A rotation rewrites every row: lock them. Sealing legacy plaintext rows at start needs no lock:
        # only payload/headers are written, so a concurrent status update of the same row is kept.
        q = q.with_for_update()
    changed = skipped = 0
    for row in (await s.execute(q)).scalars():
        if plaintext_only and is_sealed(row.payload):
            continue
        try:
            payload, headers = open_outbox(old, row.lane, row.payload, row.headers)
        except SealError:
            skipped += 1
            continue
        row.payload, row.headers = seal_outbox(new, row.lane, payload, headers)
        changed += 1
    if changed or skipped:
        log.warning("outbox rows sealed under the current key", extra={"rows": changed, "unreadable": skipped})
    return changed


def _mismatch(names: list[str], source: str, data_dir: Path) -> SecretKeyError:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    where = "EVOLINK_SECRET_KEY" if source == "env" else str(keyfile.key_path(data_dir))
    return SecretKeyError(
        f"the creds of {len(names)} instance(s) ({shown}) do not open with the key from {where}: "
        f"set EVOLINK_SECRET_KEY to the key they were sealed with, or restore {keyfile.key_path(data_dir)} "
        f"from your backup ({keyfile.previous_path(data_dir).name} holds the key before the last rotation); "
        "nothing was changed")


async def prepare_creds_key(db: Database, configured: str | None, data_dir: Path, client_name: str) -> CredsKey:
    rows = await _rows(db, client_name)
    path = keyfile.key_path(data_dir)
    source = "env"
    value = configured or None
    if value is None:
        value = keyfile.read_key(path)
        source = "file"
    if value is None:
        sealed = [name for _, name, stored in rows if stored.startswith(PREFIX)]
        if sealed:
            raise SecretKeyError(
                f"{len(sealed)} instance(s) have sealed creds but there is no key: EVOLINK_SECRET_KEY is unset "
                f"and {path} is missing; restore {path} from your backup or set EVOLINK_SECRET_KEY "
                "(nothing was changed)")
        value = keyfile.generate_key()
        keyfile.write_key(path, value)
        source = "generated"
        log.warning("generated the creds key", extra={"path": str(path)})
    cipher = CredsCipher(value)
    recovered = False
    bad = _unreadable(rows, cipher)
    if bad:
        pending = keyfile.read_key(keyfile.pending_path(data_dir))
        if pending is not None and not _unreadable(rows, CredsCipher(pending)):
            if source != "file":
                raise SecretKeyError(
                    f"an unfinished `evolink secrets rotate` sealed the creds with the key in "
                    f"{keyfile.pending_path(data_dir)}: set EVOLINK_SECRET_KEY to that key, then delete the file "
                    "(nothing was changed)")
            keyfile.promote_pending(data_dir)
            cipher, recovered = CredsCipher(pending), True
            log.warning("completed an interrupted key rotation", extra={"path": str(path)})
        else:
            raise _mismatch(bad, source, data_dir)
    # plaintext creds (and outbox rows) left by older installs are sealed now
    sealed_now = await reseal(db, cipher, cipher, client_name, plaintext_only=True)
    if sealed_now:
        log.warning("sealed plaintext creds from an older install", extra={"rows": sealed_now})
    return CredsKey(cipher, source, None if source == "env" else path, sealed_now, recovered)


@dataclass(frozen=True, slots=True)
class Rotation:
    rows: int
    key_file: Path  # where the new key is (the current key file, or secret.key.new for an env key)
    env: bool  # the key comes from EVOLINK_SECRET_KEY: the operator must switch it


async def rotate_creds_key(db: Database, configured: str | None, data_dir: Path, client_name: str) -> Rotation:
    """New key on disk first (``secret.key.new``), then every row re-sealed in one transaction, then
    the key files swapped (the old key kept as ``secret.key.old``). A crash at any point leaves either
    the old rows with the old key, or the new rows with ``.new`` (completed at the next start)."""
    current = await prepare_creds_key(db, configured, data_dir, client_name)
    new_value = keyfile.generate_key()
    pending = keyfile.pending_path(data_dir)
    keyfile.write_key(pending, new_value)
    rows = await reseal(db, current.cipher, CredsCipher(new_value), client_name)
    if current.source == "env":
        return Rotation(rows, pending, True)
    keyfile.promote_pending(data_dir)
    return Rotation(rows, keyfile.key_path(data_dir), False)
