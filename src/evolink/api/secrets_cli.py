"""`evolink secrets rotate`: re-seal every stored creds row of this installation under a new key.

Run it with the gateway stopped (it takes the same configuration as `evolink serve`). The new key
is written to `<data dir>/secret.key.new` before any row changes; all rows are re-sealed in one
transaction; then the new key replaces `secret.key` and the previous one is kept as
`secret.key.old`. With `EVOLINK_SECRET_KEY` set, the new key stays in `secret.key.new` and the
operator switches the variable to it (the command says so).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from evolink.api.settings import ConfigError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evolink secrets", description="Manage the key that seals stored creds.")
    sub = p.add_subparsers(dest="action", required=True)
    rot = sub.add_parser("rotate", help="re-seal every creds row under a freshly generated key")
    rot.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    return p


async def _rotate(settings: Settings) -> int:
    from evolink.api.app import database_url
    from evolink.store import DatabaseError, open_database
    from evolink.store.creds_key import SecretKeyError, rotate_creds_key
    from evolink.store.keyfile import secure_data_dir

    try:
        secure_data_dir(settings.EVOLINK_DATA_DIR, sqlite=settings.DATABASE_PROVIDER == "sqlite")
        db = open_database(database_url(settings))
        try:
            await db.migrate()
            result = await rotate_creds_key(db, settings.EVOLINK_SECRET_KEY, settings.EVOLINK_DATA_DIR,
                                            settings.DATABASE_CONNECTION_CLIENT_NAME)
        finally:
            await db.dispose()
    except (SecretKeyError, DatabaseError) as exc:
        print(f"evolink secrets rotate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"evolink secrets rotate: EVOLINK_DATA_DIR: {exc}", file=sys.stderr)
        return 2
    print(f"evolink: re-sealed the creds of {result.rows} instance(s) under a new key", flush=True)
    if result.env:
        print(f"evolink: the new key is in {result.key_file}: set EVOLINK_SECRET_KEY to its content, then delete "
              "the file; the old EVOLINK_SECRET_KEY no longer opens these rows", flush=True)
    else:
        print(f"evolink: new key in {result.key_file}; the previous key is kept in "
              f"{result.key_file.name}.old for older backups (back up the new one now)", flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except ConfigError as exc:
        print(f"evolink secrets: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_rotate(settings))
