"""Interop tests against the pinned Baileys peer (package so helpers import relatively)."""
