"""A bounded run of bench/fuzz_signal.py in the suite, and regressions for what it found.

The bench tool feeds >= 10^5 mutated pkmsg/msg/skmsg/SKDM/record inputs to evolink.signal; here a
few thousand per seed keep the same properties checked in seconds: only SignalError subclasses come
out, no mutated input is accepted with a plaintext no genuine message carries, no replay is
accepted, and the live session still decrypts genuine messages both ways and in the group.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from evolink.signal import InvalidMessage, InvalidRecord, SessionRecord, SignalError, decrypt_msg
from evolink.signal.record import Chain

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fuzz_signal


@pytest.mark.parametrize("seed", [11, 12])
def test_bounded_fuzz_run_only_typed_errors_and_the_live_session_survives(seed: int) -> None:
    stats = fuzz_signal.run_task((seed, 2500, 5.0))
    assert stats.inputs == 2500
    assert {k: stats.total(k) for k in fuzz_signal.BAD} == dict.fromkeys(fuzz_signal.BAD, 0), stats.findings
    # every kind of hostile input was produced and mostly refused, and the live checks ran
    assert set(stats.counts) >= {"pkmsg/fields", "msg/wrong_mac", "replay", "skmsg/fields", "live"}
    assert stats.counts["msg/wrong_mac"]["rejected"] == sum(stats.counts["msg/wrong_mac"].values())
    assert stats.counts["replay"]["rejected"] == sum(stats.counts["replay"].values())
    assert {"InvalidMac", "DuplicateMessage", "NoSenderKey", "InvalidKeyId"} <= set(stats.refusals)
    assert stats.live_checks >= 3


def _world() -> fuzz_signal.World:
    import random

    return fuzz_signal.World(random.Random(5))


def test_a_message_naming_our_own_ratchet_key_is_refused_typed_even_with_an_odd_record() -> None:
    """Found by the fuzzer: a record whose sending chain is not keyed by our ratchet key, and a msg
    carrying our ratchet key, made the ratchet step drop the chain it had just added (KeyError)."""
    w = _world()
    state = w.live_a.open_state()
    assert state is not None
    odd = state.clone()
    sending = odd.chains.pop(odd.our_ratchet.public)
    odd.chains[bytes(32)] = Chain(True, sending.counter, sending.key, {})
    record = SessionRecord((odd,))
    # a genuine msg from Alice names her own ratchet key: decrypted with her own (odd) record
    w.live_a, ct = fuzz_signal.encrypt(w.live_a, w.alice, b"x" * 16)
    with pytest.raises(InvalidMessage):
        decrypt_msg(record, w.alice, ct.body)
    # such a record is also refused when it is read back from storage
    with pytest.raises(InvalidRecord):
        SessionRecord.from_bytes(record.to_bytes())


def test_every_refusal_of_the_bounded_run_is_a_signal_error_subclass() -> None:
    stats = fuzz_signal.run_task((13, 500, 5.0))
    errors = {cls.__name__ for cls in SignalError.__subclasses__()} | {"InvalidMac"}
    assert set(stats.refusals) <= errors
