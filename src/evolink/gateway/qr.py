"""QR rendering: PNG data URLs as Evolution draws them (margin 3, scale 4, error correction H)."""

from __future__ import annotations

import segno

QR_URL_PREFIX = "https://wa.me/settings/linked_devices#"


def render_png_data_url(payload: str, dark: str = "#198754") -> str:
    qr = segno.make(payload, error="h", micro=False)
    return str(qr.png_data_uri(scale=4, border=3, dark=dark, light="#ffffff"))


def evolution_code(qr_string: str) -> str:
    """Evolution's `code` is the bare `ref,noise,identity,adv[,platform]` string (no URL prefix)."""
    return qr_string[len(QR_URL_PREFIX):] if qr_string.startswith(QR_URL_PREFIX) else qr_string
