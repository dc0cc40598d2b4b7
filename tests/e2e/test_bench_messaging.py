"""bench/messaging.py keeps working: a tiny evolink-only run (1 engine, 10 messages each way)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench" / "messaging.py"


async def test_messaging_bench_smoke(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH), "--n", "1", "--rate", "10", "--seconds", "1", "--no-baileys", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()[-2000:]
    figures = json.loads(out.decode().strip().splitlines()[-1])
    ours = figures["evolink"]
    assert figures["baileys"] is None
    assert ours["linked"] == 1 and ours["sent"] == 10 and ours["send_failed"] == 0, ours
    assert ours["received"] == 10, ours
    assert ours["cpu_ms_per_sent"] > 0 and ours["cpu_ms_per_received"] > 0 and ours["p99_ms"] > 0, ours
    assert "messaging benchmark, N=1" in out.decode()
