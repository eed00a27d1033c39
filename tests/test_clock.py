"""The one call-clock formatter."""

from __future__ import annotations

import pytest

from qa.clock import format_clock


@pytest.mark.parametrize(
    ("seconds", "decimals", "text"),
    [
        (0.0, 0, "0:00"),
        (240.0, 0, "4:00"),
        (75.25, 1, "1:15.2"),
        (75.25, 2, "1:15.25"),
        (3.5, 2, "0:03.50"),
        (4500.0, 0, "75:00"),
        (-2.0, 1, "0:00.0"),
        # Rounding carries into the minute: the old formatters printed 0:60.0 and 00:60.00.
        (59.96, 1, "1:00.0"),
        (59.996, 2, "1:00.00"),
        (119.6, 0, "2:00"),
    ],
)
def test_format_clock(seconds: float, decimals: int, text: str) -> None:
    assert format_clock(seconds, decimals) == text


def test_format_clock_rejects_odd_precision() -> None:
    with pytest.raises(ValueError, match="decimals"):
        format_clock(1.0, 7)
