"""Kernel time state via ``adjtimex(2)`` with ``modes=0`` (read-only, needs no capability).

A secondary signal only: chrony clears STA_UNSYNC only with ``rtcsync`` and leaves the PLL offset at
~0, so we follow systemd and call the kernel synced when ``maxerror < 16 s``. In a container these
values describe the host kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

STA_UNSYNC = 0x0040
STA_NANO = 0x2000
TIME_ERROR = 5
MAXERROR_UNSYNCED = 16.0  # seconds; the kernel caps maxerror here and sets STA_UNSYNC


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # glibc <sys/timex.h> layout (208 bytes on x86-64); ctypes adds the same padding as the C compiler.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True, slots=True)
class KernelState:
    available: bool
    synced: bool | None = None  # maxerror < 16 s (systemd's rule)
    state: int | None = None  # adjtimex return: TIME_OK 0 ... TIME_ERROR 5
    status: int | None = None
    unsync_flag: bool | None = None
    maxerror: float | None = None  # seconds
    esterror: float | None = None  # seconds
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        if not self.available:
            return {"available": False, "error": self.error}
        return {"available": True, "synced": self.synced, "state": self.state, "status": self.status,
                "unsyncFlag": self.unsync_flag, "maxErrorSeconds": self.maxerror,
                "estErrorSeconds": self.esterror}


def interpret(ret: int, status: int, maxerror_us: int, esterror_us: int) -> KernelState:
    maxerror = maxerror_us / 1e6
    return KernelState(True, maxerror < MAXERROR_UNSYNCED, ret, status, bool(status & STA_UNSYNC),
                       maxerror, esterror_us / 1e6)


def read_kernel_state() -> KernelState:
    """Never raises: unavailable platforms/seccomp denials give ``available=False``."""
    if not sys.platform.startswith("linux"):
        return KernelState(False, error=f"adjtimex not available on {sys.platform}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError) as exc:
        return KernelState(False, error=f"adjtimex not available: {exc}")
    fn.argtypes = [ctypes.POINTER(_Timex)]
    fn.restype = ctypes.c_int
    tx = _Timex()
    tx.modes = 0  # read only
    ret = fn(ctypes.byref(tx))
    if ret < 0:
        err = ctypes.get_errno()
        return KernelState(False, error=f"adjtimex failed: errno {err}")
    return interpret(ret, tx.status, tx.maxerror, tx.esterror)
