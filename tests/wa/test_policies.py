"""Pure policy pieces of the engine: reconnect backoff, keepalive schedule, stream-error mapping."""

from __future__ import annotations

import random

import pytest

from evolink.wa.config import ConfigError, EngineConfig
from evolink.wa.events import CloseReason
from evolink.wa.keepalive import Action, KeepaliveSchedule
from evolink.wa.reconnect import ReconnectPolicy
from evolink.wa.stream_errors import for_code, from_failure, from_stream_error, remote_closed


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    random.seed(7)
    policy = ReconnectPolicy(base=1.0, cap=8.0)
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    samples: dict[int, list[float]] = {i: [] for i in range(len(ceilings))}
    for _ in range(300):
        policy.reset()
        for i in range(len(ceilings)):
            samples[i].append(policy.next_delay())
    for i, ceiling in enumerate(ceilings):
        assert all(0 <= d <= ceiling for d in samples[i]), i
        # full jitter: spread over the whole window, not clustered at the ceiling
        assert min(samples[i]) < ceiling * 0.2
        assert max(samples[i]) > ceiling * 0.8
    assert policy.ceiling(10) == 8.0


def test_backoff_resets_and_exhausts() -> None:
    policy = ReconnectPolicy(base=0.5, cap=4.0, max_attempts=3)
    for _ in range(3):
        policy.next_delay()
    assert policy.exhausted
    policy.reset()
    assert policy.failures == 0 and not policy.exhausted
    assert policy.next_delay() <= 0.5


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(base=2.0, cap=1.0)


def test_keepalive_pings_with_jitter_and_dies_after_silence() -> None:
    sched = KeepaliveSchedule(20, 30, 45, last_received=0.0, rng=random.Random(1))
    assert 20 <= sched.next_ping < 30
    assert sched.due(sched.next_ping - 0.01) is None
    first = sched.next_ping
    assert sched.due(first) is Action.PING
    assert first + 20 <= sched.next_ping < first + 30
    # a frame arrives: the deadline moves
    sched.received(first + 1)
    assert sched.deadline == first + 46
    assert sched.due(first + 45.9) in (None, Action.PING)
    assert sched.due(first + 46) is Action.DEAD
    assert sched.wake_at() <= sched.deadline


def test_keepalive_intervals_are_spread() -> None:
    rng = random.Random(3)
    intervals = []
    for _ in range(200):
        s = KeepaliveSchedule(20, 30, 45, last_received=0.0, rng=rng)
        intervals.append(s.next_ping)
    assert min(intervals) >= 20 and max(intervals) < 30
    assert max(intervals) - min(intervals) > 8


@pytest.mark.parametrize(
    ("code", "conflict", "children", "reason", "reconnect", "immediate", "wipe"),
    [
        ("515", None, [], CloseReason.RESTART_REQUIRED, True, True, False),
        ("401", "device_removed", ["conflict"], CloseReason.LOGGED_OUT, False, False, True),
        (None, "device_removed", ["conflict"], CloseReason.LOGGED_OUT, False, False, True),
        ("401", None, [], CloseReason.LOGGED_OUT, False, False, True),
        ("403", None, [], CloseReason.FORBIDDEN, False, False, False),
        (None, "replaced", ["conflict"], CloseReason.REPLACED, False, False, False),
        ("440", None, [], CloseReason.REPLACED, False, False, False),
        ("500", None, [], CloseReason.BAD_SESSION, True, False, False),
        ("503", None, [], CloseReason.UNAVAILABLE, True, False, False),
        ("408", None, [], CloseReason.TIMED_OUT, True, False, False),
        ("428", None, [], CloseReason.CONNECTION_CLOSED, True, False, False),
        (None, None, [], CloseReason.BAD_SESSION, True, False, False),
        ("abc", None, [], CloseReason.BAD_SESSION, True, False, False),
    ],
)
def test_stream_error_mapping(code: str | None, conflict: str | None, children: list[str],
                              reason: CloseReason, reconnect: bool, immediate: bool, wipe: bool) -> None:
    d = from_stream_error(code, conflict, children)
    assert (d.reason, d.will_reconnect, d.immediate, d.wipe_creds) == (reason, reconnect, immediate, wipe)


def test_failure_mapping() -> None:
    assert from_failure("401").wipe_creds and not from_failure("401").will_reconnect
    assert from_failure("406").reason is CloseReason.LOGGED_OUT
    assert from_failure("405").reason is CloseReason.CLIENT_OUTDATED
    assert not from_failure("402").will_reconnect
    assert from_failure("503").will_reconnect and from_failure("503").reason is CloseReason.UNAVAILABLE
    assert from_failure(None).will_reconnect
    assert remote_closed().code == 428 and remote_closed().will_reconnect
    assert for_code(999).reason is CloseReason.BAD_SESSION and for_code(999).code == 999


def test_config_validation_and_derived_values() -> None:
    cfg = EngineConfig()
    assert cfg.ws_url == "wss://web.whatsapp.com/ws/chat" and cfg.origin == "https://web.whatsapp.com"
    assert cfg.root_public_key.hex() == "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b"
    assert cfg.build_hash.hex() == "f6f65c0607a1cdffd8752b051fc95edf"  # MD5("2.3000.1043857760")
    assert cfg.platform_display == "Chrome (Mac OS)" and cfg.companion_platform_id == "1"
    for bad in ({"ws_url": "http://x"}, {"root_public_key": b"x"}, {"keepalive_min": 0},
                {"keepalive_min": 5, "keepalive_max": 4}, {"reconnect_cap": 0.1}, {"qr_first_ttl": 0}):
        with pytest.raises(ConfigError):
            EngineConfig(**bad)  # type: ignore[arg-type]


def test_backoff_resets_only_after_a_stable_link() -> None:
    """Each row: (opened at, closed at) → failures after the close's next_delay (issue 10 item 3)."""
    policy = ReconnectPolicy(base=1.0, cap=60.0, stable_after=60.0)
    rows = [
        ((0.0, 2.0), 1),      # the link died 2 s after open: a failure, the counter keeps growing
        ((10.0, 12.0), 2),
        ((20.0, 79.9), 3),    # 59.9 s is not stable yet
        ((100.0, 160.0), 1),  # 60 s open: stable, the backoff starts over
        ((200.0, 201.0), 2),
    ]
    for (opened, closed), failures in rows:
        policy.opened(opened)
        policy.closed(closed)
        policy.next_delay()
        assert policy.failures == failures, (opened, closed)
    policy.closed(300.0)  # a close without an open (connect failed) never resets
    policy.next_delay()
    assert policy.failures == 3


def test_stable_after_is_validated() -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(stable_after=-1)
    with pytest.raises(ConfigError):
        EngineConfig(reconnect_stable_after=-1)
