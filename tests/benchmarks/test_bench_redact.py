"""Benchmark: redaction cost against text length, on the inputs that were super-linear.

"12 - " repeated (a recogniser writing a list of small numbers) and "1-" repeated (a Whisper
repetition loop) took 11.7 s and 2.0 s for 4,000 and 900 characters: every sub-run of the
number chain was classified (cubic) and the e-mail pattern rescanned every run from each of
its characters (quadratic). Each round redacts 4,000 and 32,000 characters (above the size
where CPU caches stop helping, which alone costs 3x between 2,000 and 3,000); the ratio of
their best times goes into `benchmark.extra_info` and must stay near 8 (linear), far from
64 (quadratic). No absolute time is asserted.
"""

from __future__ import annotations

import time

import pytest

from qa.redact import redact

#: 8x the text: linear is 8, quadratic 64. Measured here 8-20 (32,000 characters of match
#: objects outgrow the CPU caches, and the machine is shared), so 32 leaves room both ways.
MAX_RATIO = 32


def _ratio(small: str, large: str, repeat: int = 5) -> float:
    """Best time of `large` over best time of `small`, measured in turns so that a burst of
    load from other processes falls on both alike."""
    best = {small: float("inf"), large: float("inf")}
    for _ in range(repeat):
        for text in (small, large):
            started = time.perf_counter()
            redact(text)
            best[text] = min(best[text], time.perf_counter() - started)
    return best[large] / best[small]


@pytest.mark.parametrize("unit", ["12 - ", "1-", "12 "])
def test_bench_redact_is_linear(benchmark, unit: str) -> None:
    benchmark.group = f"redact {unit!r} x 32,000 characters"
    small, large = unit * (4000 // len(unit)), unit * (32000 // len(unit))
    result = benchmark(redact, large)
    assert result.text  # redacted text came back
    ratio = _ratio(small, large)
    benchmark.extra_info["ratio_32000_to_4000"] = round(ratio, 1)
    assert ratio < MAX_RATIO, f"8x the text took {ratio:.1f}x the time"
