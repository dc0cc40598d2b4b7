"""QR rendering: PNG data URLs as Evolution draws them (margin 3, scale 4, error correction H)."""

from __future__ import annotations

import segno

QR_URL_PREFIX = "https://wa.me/settings/linked_devices#"


def render_png_data_url(payload: str, dark: str = "#198754") -> str:
    qr = segno.make(payload, error="h", micro=False)
    return str(qr.png_data_uri(scale=4, border=3, dark=dark, light="#ffffff"))


def evolution_code(qr_string: str) -> str:
    """Evolution 2.3.7's `code`: Baileys' raw `<ref>,<noiseB64>,<identityB64>,<advSecretB64>`.

    The engine's string is WA Web's `https://wa.me/settings/linked_devices#…,<platformId>`; Evolution
    clients get (and their PNG encodes) the four-part form without the URL prefix and platform id.
    """
    body = qr_string[len(QR_URL_PREFIX):] if qr_string.startswith(QR_URL_PREFIX) else qr_string
    parts = body.split(",")
    return ",".join(parts[:4]) if len(parts) == 5 else body
