"""Issue 10: calls never merge, a failing database loses nothing, a dead run's calls get closed.

The failures are real: another process (or connection) holds SQLite's write lock, a child
process starts a call and dies. Nothing here is mocked.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.errors import StoreError
from qa.ids import new_call_id
from qa.rules import load_pack
from qa.rules.scoring import score
from qa.store import BASE, INTERRUPTED, SCHEMA_VERSION, CallStore, StoreOptions
from qa.types import CallInfo, Event, EventKind, Segment, Severity, Speaker

from .conftest import CALL_ID, SAMPLE_INFO, fill, raw_connect

PACK = Path(__file__).resolve().parents[2] / "examples" / "rules" / "en_support.yaml"

IDS = """
import sys
from qa.ids import new_call_id
print("\\n".join(new_call_id("file-call") for _ in range(int(sys.argv[1]))))
"""


def test_call_ids_are_unique_across_processes_and_time_ordered(repo: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    runs = [
        subprocess.run([sys.executable, "-c", IDS, "2000"], capture_output=True, text=True,
                       check=True, env=env).stdout.split()
        for _ in range(2)
    ]  # fmt: skip
    first, second = runs
    assert len(set(first) | set(second)) == 4000  # no collision within or across processes
    assert first == sorted(first) and second == sorted(second)  # time-ordered as made
    assert first[-1] < second[0]  # the later process sorts later
    assert all(i.startswith("file-call-") for i in first)


def test_a_stored_call_is_never_overwritten(filled: CallStore) -> None:
    """The same id again (the old per-process counters gave `file-<stem>-1` every time)
    is refused, and the stored call keeps its agent, segments and end."""
    again = CallInfo(CALL_ID, "agent-other", "file:again.wav", 1.0, (Speaker.AGENT,), 16000)
    with pytest.raises(StoreError, match="already in the store"):
        filled.start_call(again)
    record = filled.call(CALL_ID)
    assert record.info == SAMPLE_INFO
    assert record.end_reason == "hangup" and len(record.segments) == 4
    fresh = new_call_id("file-call")
    filled.start_call(CallInfo(fresh, "agent-other", "file:again.wav", 1.0, (), 16000))
    assert {c.call_id for c in filled.calls()} == {CALL_ID, fresh}


def test_a_version_1_database_is_upgraded_in_place(db: Path | str) -> None:
    """Version 1 in each dialect's form, as the first release wrote it, goes through every
    migration step when opened."""
    if isinstance(db, Path):
        db.parent.mkdir(parents=True)
    old, _ = raw_connect(db)
    for statement in BASE.statements("sqlite" if isinstance(db, Path) else "postgresql"):
        old.execute(statement)
    old.execute("INSERT INTO schema_version VALUES (1)")
    old.execute("INSERT INTO calls (call_id, agent_id, source, started_at, channels,"
                " sample_rate) VALUES ('old-call', 'a', 'file:x', 1.0, 'agent', 16000)")
    old.close()
    with CallStore(StoreOptions(path=db)) as store:
        assert store.upgraded_from == 1
        assert store.call("old-call").info.agent_id == "a"
        store.start_call(CallInfo("new-call", "b", "rtp://x", 2.0, (Speaker.AGENT,), 8000))
    raw, _ = raw_connect(db)
    try:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        owner = raw.execute("SELECT owner_pid, owner_host FROM calls WHERE call_id = 'new-call'")
        assert tuple(owner.fetchone()) == (os.getpid(), socket.gethostname())
        # Version 3's labels table and its trigger exist.
        assert raw.execute("SELECT count(*) FROM labels").fetchone()[0] == 0
    finally:
        raw.close()


def test_writes_during_a_held_lock_are_spooled_then_stored_once(db_path: Path) -> None:
    """Another connection holds the write lock (as a second process would): the writes are
    retried for `busy_timeout`, spooled owner-only, and replayed in order once it lets go."""
    options = StoreOptions(path=db_path, busy_timeout=0.5)
    store = CallStore(options)
    store.start_call(SAMPLE_INFO)
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        began = time.monotonic()
        for i in range(5):
            store.add_segment(Segment(CALL_ID, Speaker.AGENT, i, i + 0.5, f"segment {i}"))
        store.end_call(CALL_ID, duration=9.0, category=None, reason="hangup")
        # Only the first write waited out busy_timeout; the rest went straight to the spool.
        assert time.monotonic() - began < 0.5 + 5 * 0.4
        assert store.spooled == 6 and store.write_retries >= 1
        assert stat.S_IMODE(options.spool_path.stat().st_mode) == 0o600
        assert store.call(CALL_ID).segments == ()  # nothing reached the database yet
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    time.sleep(1.1)  # the next write retries the spool (at most once a second)
    store.add_event(Event(CALL_ID, 9.5, EventKind.STEP_DONE, "greeting", Severity.INFO))
    record = store.call(CALL_ID)
    assert [s.text for s in record.segments] == [f"segment {i}" for i in range(5)]
    assert record.end_reason == "hangup" and len(record.events) == 1
    assert options.spool_path.stat().st_size == 0
    store.close()


def test_a_replay_cut_short_writes_nothing_twice(db_path: Path) -> None:
    """The spool survives the process (written before a kill) and is replayed when the
    store next opens; records a cut-short replay already wrote are not written again."""
    options = StoreOptions(path=db_path, busy_timeout=0.2)
    store = CallStore(options)
    store.start_call(SAMPLE_INFO)
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    for i in range(3):
        store.add_segment(Segment(CALL_ID, Speaker.AGENT, i, i + 0.5, f"segment {i}"))
    store.interrupt()
    store.close()  # as a stopping process: the spool is left for the next start
    # A replay that wrote the first record and was killed before emptying the spool.
    locker.execute("ROLLBACK")
    first = options.spool_path.read_text().splitlines()[0]
    import json

    record = json.loads(first)
    locker.execute("BEGIN IMMEDIATE")
    locker.execute("INSERT INTO spool_applied (key) VALUES (?)", (record["key"],))
    row = record["row"]
    locker.execute(f"INSERT INTO segments ({', '.join(chr(34) + k + chr(34) for k in row)})"
                   f" VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    locker.execute("COMMIT")
    locker.close()
    with CallStore(options) as again:
        texts = [s.text for s in again.call(CALL_ID).segments]
    assert texts == ["segment 0", "segment 1", "segment 2"]
    assert options.spool_path.stat().st_size == 0


DIES = """
import os, sys
from pathlib import Path
from qa.types import CallInfo
from qa.store import CallStore, StoreOptions
from qa.types import Event, EventKind, Segment, Severity, Speaker
from qa.db import parse_location
store = CallStore(StoreOptions(path=parse_location(sys.argv[1])))
store.start_call(CallInfo("dead-call", "agent-1", "test", 0.0, (Speaker.AGENT,), 16000))
store.add_segment(Segment("dead-call", Speaker.AGENT, 0.5, 3.0, "thank you for calling"))
store.add_event(Event("dead-call", 2.0, EventKind.STEP_DONE, "greeting", Severity.INFO))
os._exit(0)  # dies without ending the call
"""


def test_calls_of_a_dead_process_are_closed_as_interrupted(db: Path | str, repo: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    if isinstance(db, Path):
        db.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", DIES, str(db)], check=True, env=env)
    pack = load_pack(PACK)
    with CallStore(StoreOptions(path=db)) as store:
        fill(store)  # this process's own ended call is left alone
        store.start_call(CallInfo("live-call", "agent-2", "test", 0.0, (), 16000))
        closed = store.close_interrupted(
            lambda record: score(pack, record.events, record.info.call_id))
        assert closed == ["dead-call"]
        record = store.call("dead-call")
        assert record.end_reason == INTERRUPTED and record.duration == 3.0
        assert record.scorecard is not None
        assert record.scorecard.items[0].rule_id == "greeting"
        assert record.scorecard.items[0].points_awarded > 0
        assert store.call("live-call").end_reason is None  # its process (this one) lives
        assert store.close_interrupted() == []  # closed once


def test_scoring_one_file_twice_with_two_agents_stores_two_calls(
    repo: Path, db: Path | str, shared_audio: Path
) -> None:
    """`qa score` twice on the same recording: before, both runs used `file-<stem>-1` and the
    second overwrote the first call's agent and appended its segments to it. (On PostgreSQL:
    `qa score --db postgresql://...` stores through the real command.)"""
    clip = shared_audio / "en_librivox_austen_0870.wav"
    for agent in ("agent-a", "agent-b"):
        done = subprocess.run(
            [sys.executable, "-m", "qa", "score", str(clip), "--rules", str(PACK),
             "--language", "en", "--agent", agent, "--db", str(db), "--json"],
            cwd=repo, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
    with CallStore(StoreOptions(path=db)) as store:
        calls = store.calls()
        assert sorted(c.agent_id for c in calls) == ["agent-a", "agent-b"]
        first, second = (store.call(c.call_id) for c in calls)
    assert len(first.segments) == len(second.segments) >= 1
    assert first.scorecard is not None and second.scorecard is not None


def test_the_store_listener_writes_nothing_for_a_refused_call(filled: CallStore) -> None:
    """An id given twice (by hand: `FileOptions.call_id`) is refused, and that call's
    segments and end are not added to the stored call of the same id."""
    from qa.monitor import StoreListener

    listener = StoreListener(filled)
    again = CallInfo(CALL_ID, "agent-other", "file:again.wav", 1.0, (Speaker.AGENT,), 16000)
    with pytest.raises(StoreError):
        listener.call_started(again)
    listener.segment(Segment(CALL_ID, Speaker.AGENT, 30.0, 31.0, "not mine"), 0.1)
    record = filled.call(CALL_ID)
    assert len(record.segments) == 4 and record.end_reason == "hangup"
