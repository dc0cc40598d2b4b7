"""Source selection (Marzullo majority intersection) and weighted combination.

Each source contributes the interval offset ± distance. The sweep finds the region covered by the
most intervals; it is trusted only if covered by a strict majority of the sources that answered
(chrony's "no majority" rule), so a single falseticker among three is outvoted and two disagreeing
sources are reported rather than guessed between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Intervals are widened to at least this half-width before selection. SNTP over the Internet is good
# to "a few tens of ms" and offsets below RFC 5905's step threshold (125 ms) are never acted upon, so
# sources agreeing that closely are consistent; without the floor, sub-millisecond loopback/LAN
# distances would call sources jittering by ±100 ms falsetickers.
MIN_SELECTION_DISTANCE = 0.125
_MIN_WEIGHT_DISTANCE = 1e-3  # caps 1/distance weights so one LAN source cannot take all the weight


@dataclass(frozen=True, slots=True)
class Estimate:
    name: str
    offset: float
    distance: float


@dataclass(frozen=True, slots=True)
class Selection:
    """Outcome of selection over the sources that answered."""

    candidates: int
    agreeing: int  # size of the largest clique
    majority: bool
    truechimers: tuple[str, ...]
    falsetickers: tuple[str, ...]
    offset: float | None  # combined offset of the truechimers (None without a majority)
    uncertainty: float | None
    low: float | None = None  # intersection region of the truechimers
    high: float | None = None


def marzullo(intervals: Sequence[tuple[float, float]]) -> tuple[int, float, float]:
    """Return (depth, low, high): the deepest region covered by the given closed intervals."""
    if not intervals:
        return 0, math.nan, math.nan
    # Starts sort before ends at equal values so touching intervals count as overlapping.
    edges = sorted([(lo, 0) for lo, _ in intervals] + [(hi, 1) for _, hi in intervals])
    depth = best = 0
    low = high = math.nan
    for i, (value, kind) in enumerate(edges):
        if kind == 0:
            depth += 1
            if depth > best:
                best = depth
                low = value
                high = edges[i + 1][0]  # the next edge ends this region (an end must follow)
        else:
            depth -= 1
    return best, low, high


def select_and_combine(estimates: Sequence[Estimate],
                       min_distance: float = MIN_SELECTION_DISTANCE) -> Selection:
    n = len(estimates)
    if n == 0:
        return Selection(0, 0, False, (), (), None, None)
    widths = [max(e.distance, min_distance) for e in estimates]
    intervals = [(e.offset - w, e.offset + w) for e, w in zip(estimates, widths, strict=True)]
    depth, low, high = marzullo(intervals)
    if depth * 2 <= n:
        return Selection(n, depth, False, (), tuple(e.name for e in estimates), None, None, low, high)
    mid = (low + high) / 2
    chosen = [i for i, (lo, hi) in enumerate(intervals) if lo <= mid <= hi]
    true = [estimates[i] for i in chosen]
    false = tuple(e.name for i, e in enumerate(estimates) if i not in chosen)
    weights = [1.0 / max(e.distance, _MIN_WEIGHT_DISTANCE) for e in true]
    total = sum(weights)
    offset = sum(w * e.offset for w, e in zip(weights, true, strict=True)) / total
    mean_distance = sum(w * e.distance for w, e in zip(weights, true, strict=True)) / total
    jitter = math.sqrt(sum(w * (e.offset - offset) ** 2 for w, e in zip(weights, true, strict=True)) / total)
    # Error bound: the typical source bound combined with the spread between agreeing sources
    # (RFC 5905 §11.2.3 combines peer and selection jitter the same way).
    uncertainty = math.sqrt(mean_distance ** 2 + jitter ** 2)
    return Selection(n, len(true), True, tuple(e.name for e in true), false, offset, uncertainty, low, high)
