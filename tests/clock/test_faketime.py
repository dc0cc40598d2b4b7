"""Whole-process clock shift: a child under libfaketime (+3 h 00 m 20 s) measures against responders
that run in this (unfaked) process and tell true time -> verdict local_time_rtc naming UTC+03:00."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from clock_helpers import Responders

ROOT = Path(__file__).resolve().parents[2]
LIBS = [Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
        Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
        Path("/usr/lib/faketime/libfaketime.so.1")]
LIB = next((p for p in LIBS if p.exists()), None)
pytestmark = pytest.mark.skipif(LIB is None or shutil.which("faketime") is None, reason="libfaketime missing")

SHIFT = 3 * 3600 + 20  # host clock runs 3 h 00 m 20 s ahead (RTC kept in UTC+03:00 local time, drifted)

CHILD = """
import asyncio, json, sys, time
from evolink.clock import ClockConfig, ClockGuard, NtpServer, SkewPolicy
from evolink.clock.kernel import KernelState

async def main() -> None:
    servers = tuple(NtpServer("127.0.0.1", int(p)) for p in sys.argv[1].split(","))
    cfg = ClockConfig(ntp_servers=servers, upstream_http_url=None, ntp_packets=2,
                      ntp_packet_spacing_seconds=0.0, ntp_timeout_seconds=2.0,
                      skew_policy=SkewPolicy(sys.argv[2]))
    guard = ClockGuard(cfg, kernel_reader=lambda: KernelState(True, True, 0, 0, False, 0.01, 0.001),
                       env={"TZ": "UTC"}, publish_metrics=False)
    decision = await guard.authorize_link("code")
    status = guard.status
    print(json.dumps({"host_time": time.time(), "corrected": guard.clock.time(),
                      "status": status.summary(), "allowed": decision.allowed, "message": decision.message}))

asyncio.run(main())
"""


async def _run_child(ports: str, policy: str) -> dict[str, object]:
    env = {**os.environ, "LD_PRELOAD": str(LIB), "FAKETIME": f"+{SHIFT}", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
           "FAKETIME_NO_CACHE": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, ports, policy, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def test_faketime_shift_is_diagnosed_as_local_time_rtc(responders: Responders) -> None:
    servers = [(await responders.start(skew=0.0))[0] for _ in range(3)]
    ports = ",".join(str(s.port) for s in servers)
    compensate, refuse = await asyncio.gather(_run_child(ports, "compensate"), _run_child(ports, "refuse"))
    now = time.time()

    # libfaketime really shifted the child's wall clock...
    assert abs(float(compensate["host_time"]) - now - SHIFT) < 30  # type: ignore[arg-type]
    status = compensate["status"]
    assert isinstance(status, dict)
    # ...and SNTP against true-time responders measured it (sign: true - host).
    assert abs(status["offsetSeconds"] + SHIFT) < 0.1
    assert status["verdict"] == "local_time_rtc" and status["zoneOffset"] == "UTC+03:00"
    assert "RTC kept in local time, UTC+03:00, e.g." in status["reason"]
    assert "Europe/Moscow" in status["candidateZones"]
    # compensate: linking goes ahead on corrected time, which is true time again.
    assert compensate["allowed"] is True
    assert abs(float(compensate["corrected"]) - now) < 30  # type: ignore[arg-type]
    # refuse: linking is refused with the offset, sources, diagnosis and fix.
    assert refuse["allowed"] is False
    message = str(refuse["message"])
    assert "3h00m20" in message and "ntp 3/3 agreeing" in message
    assert "local_time_rtc" in message and "timedatectl set-local-rtc 0" in message
