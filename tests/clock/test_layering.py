"""evolink.clock stands alone: no gateway/api/wa/store imports; the kernel reader degrades gracefully."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from evolink.clock.kernel import STA_UNSYNC, interpret, read_kernel_state

ROOT = Path(__file__).resolve().parents[2]


def test_clock_package_imports_no_upper_layer() -> None:
    code = ("import sys, evolink.clock, evolink.clock.guard, evolink.clock.policy; "
            "print(','.join(sorted(m for m in sys.modules if m.startswith('evolink.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, check=True).stdout
    loaded = out.strip().split(",")
    assert all(m.startswith(("evolink.clock", "evolink.metrics")) for m in loaded), loaded


def test_kernel_interpretation_follows_systemd_rule() -> None:
    unsynced = interpret(5, STA_UNSYNC, 16_000_000, 16_000_000)
    assert unsynced.synced is False and unsynced.unsync_flag and unsynced.maxerror == 16.0
    # chrony without rtcsync: STA_UNSYNC stays set although maxerror is small -> synced.
    chrony = interpret(5, STA_UNSYNC, 250_000, 1_000)
    assert chrony.synced is True and chrony.unsync_flag


def test_read_kernel_state_never_raises() -> None:
    state = read_kernel_state()
    if state.available:
        assert state.maxerror is not None and state.maxerror >= 0 and state.state in range(6)
    else:
        assert state.error
    assert isinstance(state.to_dict(), dict)
