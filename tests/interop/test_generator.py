"""The committed vectors are exactly what the generator and the pinned Baileys produce today.

Guards against hand-edited or stale vector files: the generator is re-run into a temporary
directory and compared with ``tests/vectors``. Only the parts that legitimately vary are ignored
(the node version in ``meta`` and the key pairs Baileys draws from the OS RNG).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .vectorlib import INTEROP_DIR, NODE_TIMEOUT, VECTORS_DIR

FILES = ("binary_nodes", "noise_handshake", "pairing", "signatures", "signal")


def _comparable(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data.pop("meta", None)
    data.pop("baileys_generated", None)
    return data


@pytest.mark.baileys
def test_generator_reproduces_committed_vectors(node_bin: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [node_bin, str(INTEROP_DIR / "gen_vectors.mjs"), str(tmp_path)],
        cwd=INTEROP_DIR,
        capture_output=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    for name in FILES:
        fresh, committed = tmp_path / f"{name}.json", VECTORS_DIR / f"{name}.json"
        assert _comparable(fresh) == _comparable(committed), (
            f"{name}.json differs from a fresh run; regenerate with `cd tests/interop && node gen_vectors.mjs`"
        )
