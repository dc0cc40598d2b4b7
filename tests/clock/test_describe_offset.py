"""describe_offset: human text of an offset, never a '60.0s' carried into the wrong unit."""

from __future__ import annotations

import pytest

from evolink.clock.verdict import describe_offset


@pytest.mark.parametrize(("offset", "text"), [
    (3599.98, "1h00m00.0s behind"),
    (-3600.0, "1h00m00.0s ahead of"),
    (59.97, "1m00.0s behind"),
    (119.96, "2m00.0s behind"),
    (-10820.0, "3h00m20.0s ahead of"),
    (1.5, "1.500s behind"),
    (-12.25, "12.2s ahead of"),
    (90.04, "1m30.0s behind"),
])
def test_describe_offset(offset: float, text: str) -> None:
    assert describe_offset(offset) == text
