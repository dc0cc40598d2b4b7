"""Outbox rows sealed at rest (issue 10 item 7).

An outbox row holds a whole webhook envelope (a QR ``code`` carries the ADV secret, a pairing code
links a device) and the destination's headers (a ``jwt_key``, an ``Authorization`` token). With the
installation's creds key both are sealed together: the ``payload`` column holds
``{"sealed": "enc:v1:…"}`` (AES-256-GCM of ``{"payload": …, "headers": …}``, the lane as associated
data) and ``headers`` is NULL. Readers (the delivery worker, any transport) get plaintext from the
repository; rows written before this version (a plain envelope, no ``sealed`` key) are read as they
are, so they still deliver after an upgrade.
"""

from __future__ import annotations

import json
from typing import Any

from evolink.store.sealing import PREFIX, CredsCipher, SealError

SEALED_KEY = "sealed"


def context(lane: str) -> str:
    return f"outbox:{lane}"


def is_sealed(payload: Any) -> bool:
    if not isinstance(payload, dict) or set(payload) != {SEALED_KEY}:
        return False
    value = payload[SEALED_KEY]
    return isinstance(value, str) and value.startswith(PREFIX)


def seal_outbox(cipher: CredsCipher, lane: str, payload: dict[str, Any],
                headers: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The (payload, headers) columns to store; unchanged without a key (tools, tests)."""
    if not cipher.enabled:
        return payload, headers
    blob = json.dumps({"payload": payload, "headers": headers}, separators=(",", ":"))
    return {SEALED_KEY: cipher.seal(blob, context(lane))}, None


def open_outbox(cipher: CredsCipher, lane: str, payload: Any,
                headers: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Plain (payload, headers) from stored columns; SealError if sealed with another key."""
    if not is_sealed(payload):
        return payload, headers  # written before outbox sealing: delivered as stored
    try:
        opened = json.loads(cipher.open(payload[SEALED_KEY], context(lane)))
    except SealError:
        raise
    except ValueError as exc:
        raise SealError("sealed outbox row is not valid JSON") from exc
    if not isinstance(opened, dict) or not isinstance(opened.get("payload"), dict):
        raise SealError("sealed outbox row has no payload")
    return opened["payload"], opened.get("headers")
