"""The creds key's home on disk, and the file modes of the data directory.

Without ``EVOLINK_SECRET_KEY`` the key that seals creds lives in ``<data dir>/secret.key`` (mode 0600,
like the generated API key). A rotation writes the next key to ``secret.key.new`` before any row is
re-sealed and keeps the previous one as ``secret.key.old`` (it still opens database backups taken
before the rotation), so no crash point leaves rows sealed under a key that exists nowhere.

Files are written with ``O_EXCL`` to a temporary name, fsynced and renamed: a reader sees the old
key or the new one, never half a key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

KEY_FILE = "secret.key"
NEW_SUFFIX = ".new"
OLD_SUFFIX = ".old"
DB_FILES = ("evolink.db", "evolink.db-wal", "evolink.db-shm", "evolink.db-journal")


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def pending_path(data_dir: Path) -> Path:
    return data_dir / (KEY_FILE + NEW_SUFFIX)


def previous_path(data_dir: Path) -> Path:
    return data_dir / (KEY_FILE + OLD_SUFFIX)


def generate_key() -> str:
    """256 random bits, URL-safe base64 (HKDF turns it into the AES key)."""
    return secrets.token_urlsafe(32)


def read_key(path: Path) -> str | None:
    """The key stored at ``path``, or None when the file is absent or empty."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def write_key(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def promote_pending(data_dir: Path) -> None:
    """End a rotation: the current key becomes ``.old``, ``.new`` becomes the current key."""
    current = read_key(key_path(data_dir))
    if current is not None:
        write_key(previous_path(data_dir), current)
    os.replace(pending_path(data_dir), key_path(data_dir))
    _fsync_dir(data_dir)


def secure_data_dir(data_dir: Path, *, sqlite: bool = True) -> None:
    """Create the data dir (0700) and tighten it and the SQLite files to owner-only.

    The SQLite file is created empty with 0600 before SQLite opens it: SQLite gives its ``-wal`` and
    ``-shm`` files the main file's mode, so all three stay private whatever the umask.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    db = data_dir / DB_FILES[0]
    if sqlite and not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in DB_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(data_dir / name, 0o600)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
