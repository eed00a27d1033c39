"""Graceful overload, shortened for CI (issue 11, item 2; the 10-minute run is
`python -m tests.benchmarks.overload`): real Whisper on real calls, far more speech than the
workers can decode, then the load falls.

The overload is made the same on any machine: each call is replayed as fast as possible, so
all of its speech waits for the workers at once, and a new call comes every half second. The
assertions are on behaviour: the policy engaged, every utterance of every call is accounted
for (transcribed, or dropped and counted; refused calls counted), the lag of what was
transcribed stayed within the shedding limit plus the longest decode of the same run, the
backlog did not keep growing, and once the load fell the service went back to the full
decode and took new calls. No wall-clock figure is a pass/fail bound.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qa.overload import OverloadOptions
from tests.benchmarks.live_load import build_call
from tests.benchmarks.overload import Phase, run_overload

POLICY = OverloadOptions(enabled=True)


@pytest.fixture(scope="module")
def run(transcriber, shared_audio: Path, tmp_path_factory, request):
    call, _ = build_call(shared_audio, tmp_path_factory.mktemp("overload") / "call.wav")
    caplog = logging.getLogger("qa.pipeline")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    caplog.addHandler(handler)
    try:
        result = run_overload(transcriber, call, [
            Phase(30.0, 0.5, realtime=False),   # overload: a call's speech at once, twice a s
            # The load falls: once recovered, two live calls 10 s apart.
            Phase(20.0, 10.0, realtime=True, after_recovery=True),
        ], overload=POLICY)
    finally:
        caplog.removeHandler(handler)
    result.log = records
    return result


def test_the_policy_engages_and_counts_what_it_gives_up(run):
    assert run.episodes >= 1
    assert max(level for *_, level in run.samples) >= 1
    assert run.degraded > 0
    # Given up work is counted, and the counts agree with what the calls report.
    refused = [s for s in run.summaries if s.reason.startswith("refused")]
    assert len(refused) == run.refused
    assert all(s.utterances == 0 and s.scorecard is None for s in refused)
    assert run.dropped == sum(s.dropped_utterances for s in run.summaries)
    assert run.shed <= run.dropped


def test_nothing_is_dropped_silently(run):
    admitted = [s for s in run.summaries if not s.reason.startswith("refused")]
    # Every utterance of every admitted call was either transcribed or counted as dropped.
    assert sum(s.utterances for s in admitted) == len(run.lags) + run.dropped
    # And every refusal and every shed is in the log, naming calls.
    messages = [r.getMessage() for r in run.log]
    assert sum("refused" in m for m in messages) == run.refused
    if run.shed:
        assert any("dropped untranscribed" in m for m in messages)


def test_lag_stays_bounded_and_the_backlog_does_not_grow(run):
    end = run.phase_ends[0]
    bound = POLICY.shed_after_s + run.longest_decode() + 1.0  # + batch wait and delivery
    assert max(lag for _, lag in run.lags) <= bound, (bound, run.longest_decode())
    # The queue age (the backlog, in seconds) is held: its peak in the second half of the
    # overload is no higher than the bound, and no higher than in the first half plus one
    # decode (a growing backlog would keep climbing).
    first = [age for t, age, *_ in run.samples if t < end / 2]
    second = [age for t, age, *_ in run.samples if end / 2 <= t < end]
    assert max(second) <= bound
    assert max(second) <= max(first) + run.longest_decode() + 1.0


def test_the_service_recovers_when_the_load_falls(run):
    # Back to normal with nothing waiting within the shedding limit plus a decode: whatever
    # waited longer was shed, so the backlog cannot outlive the load by more.
    (waited,) = run.recovery_waits
    assert waited <= POLICY.shed_after_s + run.longest_decode() + 1.0
    # The calls that came after the load fell were admitted and fully transcribed.
    late = [s for s in run.summaries if s.call_id in
            {f"load-{i}" for i in range(len(run.summaries) - 2, len(run.summaries))}]
    assert len(late) == 2
    assert all(not s.reason.startswith("refused") and s.dropped_utterances == 0
               and s.segments >= 3 for s in late)
    assert run.samples[-1][3] == 0 and run.samples[-1][1] == 0.0
