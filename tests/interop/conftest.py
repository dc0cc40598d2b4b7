"""Fixtures for the Baileys interop tests; the helpers themselves live in ``vectorlib``."""

from __future__ import annotations

import pytest

from .vectorlib import require_baileys


@pytest.fixture
def node_bin() -> str:
    """Path of ``node`` with the pinned Baileys installed (skips with the reason otherwise)."""
    return require_baileys()
