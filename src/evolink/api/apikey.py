"""The global API key: AUTHENTICATION_API_KEY, or one generated on first start and kept in the data dir.

Evolution falls back to the public default `BQYHJGJHJ`; evolink never runs with a known key.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "apikey"


@dataclass(frozen=True, slots=True)
class ApiKey:
    value: str
    source: str  # "env" | "file" | "generated"
    path: Path | None = None


def resolve_api_key(configured: str | None, data_dir: Path) -> ApiKey:
    if configured:
        return ApiKey(configured, "env")
    path = data_dir / KEY_FILE
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return ApiKey(value, "file", path)
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(20).upper()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return ApiKey(value, "generated", path)
