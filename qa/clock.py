"""The call clock as people read it: one formatter for the console, prompts, reports and review.

Every time in the service is seconds on the call's one audio clock (docs/design.md); this is
the only place that turns such a time into text.
"""

from __future__ import annotations

__all__ = ["format_clock"]


def format_clock(seconds: float, decimals: int = 0) -> str:
    """Call-clock seconds as `m:ss` with `decimals` digits of the second (`m:ss.s`, ...).

    The time is rounded first, so 59.96 s at one decimal reads `1:00.0`, never `0:60.0`;
    minutes keep counting past the hour (`75:00`), as call lengths are read. Negative times
    (before the call began) read as 0.

    Args:
        seconds: Seconds on the call clock.
        decimals: Digits after the seconds' point (0-3).
    """
    if not 0 <= decimals <= 3:
        raise ValueError(f"format_clock: decimals must be 0-3, got {decimals}")
    scale = 10**decimals
    ticks = round(max(0.0, seconds) * scale)
    minutes, rest = divmod(ticks, 60 * scale)
    whole, fraction = divmod(rest, scale)
    if decimals == 0:
        return f"{minutes}:{whole:02d}"
    return f"{minutes}:{whole:02d}.{fraction:0{decimals}d}"
