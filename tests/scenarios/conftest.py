"""Fixtures for the scenario tests: the scripted calls rendered once, and one in-process replay
of all three through the service (`Monitor`, shared model) that every scenario test reads."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa.commands.backtest import CallOutcome, run_backtest
from qa.commands.score import CallResults
from qa.monitor import Monitor, MonitorOptions
from qa.rules import RulePack, load_pack
from qa.types import CallSummary, Event, PipelineListener, Segment
from tests.scenarios.calls import PACK, RenderedCall, render_calls


class Recorder(PipelineListener):
    """Keeps every notification in the order the pipeline made it: (kind, call, value)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()

    def segment(self, segment: Segment, latency: float) -> None:
        with self._lock:
            self.log.append(("segment", segment.call_id, segment))

    def event(self, event: Event) -> None:
        with self._lock:
            self.log.append(("event", event.call_id, event))

    def call_ended(self, summary: CallSummary) -> None:
        with self._lock:
            self.log.append(("summary", summary.call_id, summary))


@dataclass(frozen=True)
class Replayed:
    """One scenario call after its replay: the script, the outcome, what the pipeline said."""

    call: RenderedCall
    outcome: CallOutcome
    log: tuple[tuple[str, object], ...]  # (kind, value) of this call, in order
    summary: CallSummary

    @property
    def events(self) -> list[Event]:
        return [v for k, v in self.log if k == "event"]

    @property
    def violations(self) -> list[Event]:
        return [e for e in self.events if e.points < 0]


@pytest.fixture(scope="session")
def pack() -> RulePack:
    return load_pack(PACK)


@pytest.fixture(scope="session")
def calls(tmp_path_factory) -> dict[str, RenderedCall]:
    """clean, violations and long, rendered into a session folder (nothing committed)."""
    return render_calls(tmp_path_factory.mktemp("calls"))


@pytest.fixture(scope="session")
def replayed(calls, transcriber) -> dict[str, Replayed]:
    """All three calls replayed one after the other through one Monitor, as `qa backtest`
    replays a folder (which is what `test_backtest` checks on the same run)."""
    recorder = Recorder()
    results = CallResults()
    with Monitor(MonitorOptions(rules=PACK), [results, recorder],
                 transcriber=transcriber) as monitor:
        outcomes = run_backtest(monitor, results, [c.path for c in calls.values()])
    out = {}
    for call, outcome in zip(calls.values(), outcomes, strict=True):
        log = tuple((k, v) for k, c, v in recorder.log if c == outcome.call_id)
        out[call.name] = Replayed(call, outcome, log, results.summaries[outcome.call_id])
    return out


@pytest.fixture(scope="session")
def outcomes(replayed) -> list[CallOutcome]:
    return [r.outcome for r in replayed.values()]


@pytest.fixture(scope="session")
def calls_dir(calls) -> Path:
    return next(iter(calls.values())).path.parent
