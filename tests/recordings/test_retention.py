"""Retention: a call past the period goes with its recording (and a stray file of an expired
day); a recent call stays; a call that reviewers overrode keeps its audit trail as a bare,
purged row; `qa recordings prune` does the same from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from qa.errors import CallNotFoundError
from qa.recordings import Recorder, RecordingOptions, prune
from qa.sources.base import CallInfo
from qa.store import CallStore, StoreOptions
from qa.types import Event, EventKind, Scorecard, ScoreItem, Segment, Speaker
from tests.recordings.conftest import qa
from tests.recordings.test_recorder import RATE, record, signal

DAY = 86400.0


def recorded_call(store: CallStore, recorder: Recorder, call_id: str, age_days: float) -> Path:
    """A stored, ended, scored call started `age_days` ago, with its recording."""
    info = CallInfo(call_id, "agent-1", "file:x", time.time() - age_days * DAY,
                    (Speaker.AGENT, Speaker.CUSTOMER), RATE)
    store.start_call(info)
    store.add_segment(Segment(call_id, Speaker.CUSTOMER, 0.1, 0.9, "Hello there."))
    store.add_event(Event(call_id, 0.5, EventKind.STEP_DONE, "greeting"))
    store.end_call(call_id, duration=1.0, category=None, reason="end of file")
    store.save_scorecard(Scorecard(call_id, (ScoreItem("greeting", "Greet", 10, 10),), 100.0,
                                   "95-100"))
    record(recorder, info, {Speaker.AGENT: signal(1.0, 220, 1),
                            Speaker.CUSTOMER: signal(1.0, 330, 2)})
    recording = store.recording(call_id)
    assert recording is not None
    return Path(recording.path)


@pytest.fixture
def setup(tmp_path: Path):
    store = CallStore(StoreOptions(path=tmp_path / "calls.db"))
    recorder = Recorder(RecordingOptions(), tmp_path / "recordings", store)
    yield store, recorder, tmp_path
    recorder.close()
    store.close()


def test_prune_deletes_old_calls_with_their_recordings_and_keeps_recent_ones(setup):
    store, recorder, tmp_path = setup
    old = recorded_call(store, recorder, "old", age_days=100)
    reviewed = recorded_call(store, recorder, "reviewed", age_days=95)
    new = recorded_call(store, recorder, "new", age_days=1)
    store.add_override("reviewed", "greeting", points=5, reviewer="rita", reason="too slow")
    stray_day = tmp_path / "recordings" / "2001" / "02" / "03"
    stray_day.mkdir(parents=True)
    (stray_day / "lost.flac").write_bytes(b"x" * 10)

    result = prune(store, tmp_path / "recordings", 90)

    assert (result.calls, result.failed) == (2, 0)
    assert result.files == 3  # old, reviewed, and the stray one
    assert not old.exists() and not reviewed.exists() and not stray_day.exists()
    assert new.exists() and store.recording("new") is not None
    with pytest.raises(CallNotFoundError):
        store.call("old")
    assert store.recording("old") is None
    # The overridden call: everything said on it is gone, the audit trail is not.
    kept = store.call("reviewed")
    assert kept.segments == () and kept.events == () and kept.scorecard is None
    assert [o.reason for o in kept.overrides] == ["too slow"]
    assert store.recording("reviewed") is None
    assert len(store.call("new").segments) == 1
    # A second sweep has nothing left to do (the purged row is not swept again).
    assert prune(store, tmp_path / "recordings", 90) == type(result)()


def test_zero_days_keeps_everything(setup):
    store, recorder, tmp_path = setup
    old = recorded_call(store, recorder, "ancient", age_days=4000)
    assert prune(store, tmp_path / "recordings", 0).calls == 0
    assert old.exists() and store.recording("ancient") is not None


def test_qa_recordings_prune_command(setup):
    store, recorder, tmp_path = setup
    old = recorded_call(store, recorder, "old", age_days=40)
    new = recorded_call(store, recorder, "new", age_days=10)
    store.close()
    result = qa("recordings", "prune", "--db", str(tmp_path / "calls.db"),
                "--retention-days", "30", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"calls": 1, "files": 1, "bytes": json.loads(
        result.stdout)["bytes"], "failed": 0, "retention_days": 30}
    assert not old.exists() and new.exists()
    shown = qa("recordings", "show", "new", "--db", str(tmp_path / "calls.db"), "--json",
               timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["path"] == str(new)
    gone = qa("recordings", "show", "old", "--db", str(tmp_path / "calls.db"), timeout=60)
    assert gone.returncode != 0 and "old" in gone.stderr


def test_recording_survives_a_reopened_store(setup):
    store, recorder, tmp_path = setup
    path = recorded_call(store, recorder, "kept", age_days=0)
    store.close()
    with CallStore(StoreOptions(path=tmp_path / "calls.db", read_only=True)) as again:
        recording = again.recording("kept")
    assert recording is not None and recording.path == str(path)
    assert recording.bytes == path.stat().st_size
    assert np.isclose(recording.duration, 1.0)


def test_an_older_store_is_upgraded_to_take_recordings(tmp_path: Path):
    import sqlite3

    from qa.store import _SCHEMA
    from qa.types import MaskedSpan, Recording

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA + "INSERT INTO schema_version VALUES (1);"
                      "INSERT INTO calls (call_id, agent_id, source, started_at, channels,"
                      " sample_rate, ended_at) VALUES ('c', 'a', 'file:x', 1.0, 'agent', 8000,"
                      " 2.0);")
    old.close()
    span = MaskedSpan(Speaker.AGENT, 1.0, 2.5, "CARD")
    with CallStore(StoreOptions(path=path)) as store:
        store.add_recording(Recording("c", "/x/c.flac", "flac", 8000, 1, 3.0, 10, (span,), 5.0))
        assert store.recording("c") == Recording("c", "/x/c.flac", "flac", 8000, 1, 3.0, 10,
                                                 (span,), 5.0)
        assert store.expired_calls(before=1.5) == ["c"]
        assert store.delete_call("c") is True
        assert store.recording("c") is None and store.expired_calls(before=1.5) == []
