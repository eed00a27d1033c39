"""The call store on both backends: round trips, redaction, the override audit trail; and
SQLite's own WAL mode and permissions."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from qa.errors import CallNotFoundError, QAError, StoreError
from qa.rules.scoring import band
from qa.store import SCHEMA_VERSION, CallStore, StoreOptions, default_db_path
from qa.types import CallInfo, Event, EventKind, Segment, Speaker, Word

from .conftest import (
    CALL_ID,
    SAMPLE_EVENTS,
    SAMPLE_INFO,
    SAMPLE_SCORECARD,
    SAMPLE_SEGMENTS,
    fill,
    raw_connect,
)


def test_round_trip_of_every_type(filled: CallStore, db: Path | str) -> None:
    # A second connection proves the values came from the database, not from memory (and,
    # on PostgreSQL, that times are double precision: REAL there would round the start).
    with CallStore(StoreOptions(path=db)) as again:
        record = again.call(CALL_ID)
    assert record.info == SAMPLE_INFO
    assert record.segments == SAMPLE_SEGMENTS
    assert record.events == SAMPLE_EVENTS
    assert record.scorecard == SAMPLE_SCORECARD
    assert record.effective == SAMPLE_SCORECARD
    assert record.overrides == ()
    assert (record.duration, record.category, record.end_reason) == (20.0, "complaint", "hangup")


def test_summary_lists_calls_newest_first(filled: CallStore) -> None:
    later = CallInfo("call-0002", "agent-8", "rtp://x", SAMPLE_INFO.started_at + 60, (), 16000)
    filled.start_call(later)
    summaries = filled.calls()
    assert [s.call_id for s in summaries] == ["call-0002", CALL_ID]
    running, done = summaries
    assert (running.duration, running.total, running.band, running.events) == (None, None, "", 0)
    assert (done.total, done.automatic_total, done.band, done.events) == (85.0, 85.0, "80-85", 3)
    assert [s.call_id for s in filled.calls(limit=1)] == ["call-0002"]


def test_wal_mode_and_schema_version(db_path: Path) -> None:
    with CallStore(StoreOptions(path=db_path)) as store:
        fill(store)
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        db.close()


def test_files_are_owner_only(db_path: Path) -> None:
    with CallStore(StoreOptions(path=db_path)) as store:
        fill(store)
        for name in ("calls.db", "calls.db-wal", "calls.db-shm"):  # the last close removes two
            path = db_path.parent / name
            assert path.exists(), name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    CallStore(StoreOptions(path=path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_path_follows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QA_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    assert StoreOptions().path == Path("/srv/data/qa/calls.db")
    monkeypatch.setenv("QA_DB", "/tmp/x.db")
    assert default_db_path() == Path("/tmp/x.db")


def test_overrides_are_an_audit_trail(filled: CallStore, db: Path | str) -> None:
    first = filled.add_override(
        CALL_ID, "no_shirking", points=15, reviewer="ann", reason="phrase was quoted"
    )
    second = filled.add_override(
        CALL_ID, "no_shirking", points=20, reviewer="bob", reason="customer said it, not agent"
    )
    assert (first.old_points, first.new_points) == (10.0, 15.0)
    assert (second.old_points, second.new_points) == (15.0, 20.0)
    assert second.created_at >= first.created_at

    record = filled.call(CALL_ID)
    assert record.overrides == (first, second)
    assert record.scorecard == SAMPLE_SCORECARD  # the automatic result is untouched
    items = {i.rule_id: i.points_awarded for i in record.effective.items}
    assert items == {"greeting": 10.0, "no_shirking": 20.0, "verify_identity": 65.0}
    assert (record.effective.total, record.effective.band) == (95.0, "90-95")
    summary = filled.calls()[0]
    assert (summary.total, summary.automatic_total, summary.overrides) == (95.0, 85.0, 2)

    # Re-scoring replaces the automatic result; the overrides still apply on top.
    filled.save_scorecard(SAMPLE_SCORECARD)
    assert filled.call(CALL_ID).effective.total == 95.0

    # The database itself refuses to change the trail, whoever connects.
    raw, integrity_error = raw_connect(db)
    try:
        with pytest.raises(integrity_error, match="overrides are an append-only audit trail"):
            raw.execute("UPDATE overrides SET new_points = 0")
        with pytest.raises(integrity_error, match="append-only"):
            raw.execute("DELETE FROM overrides")
        if not isinstance(db, Path):  # PostgreSQL's TRUNCATE skips row triggers
            with pytest.raises(integrity_error, match="append-only"):
                raw.execute("TRUNCATE overrides CASCADE")
        assert raw.execute("SELECT count(*) FROM overrides").fetchone()[0] == 2
    finally:
        raw.close()


def test_override_is_checked(filled: CallStore) -> None:
    with pytest.raises(StoreError, match="between 0 and 20"):
        filled.add_override(CALL_ID, "no_shirking", points=21, reviewer="a", reason="r")
    with pytest.raises(StoreError, match="no scorecard item 'nope'"):
        filled.add_override(CALL_ID, "nope", points=1, reviewer="a", reason="r")
    with pytest.raises(StoreError, match="reviewer and a reason"):
        filled.add_override(CALL_ID, "greeting", points=1, reviewer=" ", reason="r")
    with pytest.raises(CallNotFoundError):
        filled.add_override("nope", "greeting", points=1, reviewer="a", reason="r")
    assert filled.call(CALL_ID).overrides == ()


@pytest.mark.parametrize(
    ("total", "expected"),
    [(0, "<75"), (75, "<75"), (75.5, "75-80"), (80, "75-80"), (85, "80-85"), (90, "85-90"),
     (95, "90-95"), (95.01, "95-100"), (100, "95-100")],
)  # fmt: skip
def test_band_bounds(total: float, expected: str) -> None:
    # The store recomputes effective bands with the scorer's own function.
    assert band(total) == expected


def test_unknown_call_is_a_qa_error(store: CallStore) -> None:
    with pytest.raises(CallNotFoundError) as info:
        store.call("missing")
    assert isinstance(info.value, QAError) and isinstance(info.value, KeyError)
    assert str(info.value) == "no call 'missing' in the call store"
    with pytest.raises(CallNotFoundError):
        store.add_segment(Segment("missing", Speaker.AGENT, 0.0, 1.0, "hi"))
    with pytest.raises(CallNotFoundError):
        store.add_event(Event("missing", 0.0, EventKind.DTMF, "dtmf"))
    with pytest.raises(CallNotFoundError):
        store.end_call("missing", duration=1.0, category=None, reason="hangup")


def test_redaction_is_on_by_default(store: CallStore) -> None:
    store.start_call(SAMPLE_INFO)
    spoken = " my number is four one five five five five"
    words = tuple(
        Word(1.0 + i / 10, 1.1 + i / 10, f" {w}", 0.9) for i, w in enumerate(spoken.split())
    )
    store.add_segment(Segment(CALL_ID, Speaker.CUSTOMER, 1.0, 2.0, spoken, words, language="en"))
    store.add_segment(
        Segment(CALL_ID, Speaker.CUSTOMER, 3.0, 4.0, "我的手机是13812345678", language="zh")
    )
    store.add_event(
        Event(CALL_ID, 3.5, EventKind.STEP_DONE, "record_phone", evidence="手机是13812345678",
              message="Confirm 13812345678 back to the caller")
    )  # fmt: skip
    record = store.call(CALL_ID)
    first, second = record.segments
    assert first.text == " my number is [NUMBER]"
    assert [w.text for w in first.words] == [" my", " number", " is", " [NUMBER]"]
    assert (first.words[-1].start, first.words[-1].end) == (words[3].start, words[-1].end)
    assert second.text == "我的手机是[PHONE]"
    assert record.events[0].evidence == "手机是[PHONE]"
    assert record.events[0].message == "Confirm [PHONE] back to the caller"


def test_redaction_can_be_turned_off(db: Path | str) -> None:
    with CallStore(StoreOptions(path=db, redact=False)) as store:
        store.start_call(SAMPLE_INFO)
        store.add_segment(Segment(CALL_ID, Speaker.CUSTOMER, 1.0, 2.0, "13812345678"))
        assert store.call(CALL_ID).segments[0].text == "13812345678"


def test_partial_segments_are_not_stored(store: CallStore) -> None:
    store.start_call(SAMPLE_INFO)
    store.add_segment(Segment(CALL_ID, Speaker.AGENT, 0.0, 1.0, "hel", final=False))
    store.add_segment(Segment(CALL_ID, Speaker.AGENT, 0.0, 1.5, "hello"))
    assert [s.text for s in store.call(CALL_ID).segments] == ["hello"]


def test_concurrent_writers_share_one_store(store: CallStore) -> None:
    store.start_call(SAMPLE_INFO)

    def write(speaker: Speaker) -> None:
        for i in range(50):
            store.add_segment(Segment(CALL_ID, speaker, float(i), i + 0.5, f"{speaker} {i}"))

    threads = [threading.Thread(target=write, args=(s,)) for s in (Speaker.AGENT, Speaker.CUSTOMER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    segments = store.call(CALL_ID).segments
    assert len(segments) == 100
    assert {s.text for s in segments} == {f"{sp} {i}" for sp in ("agent", "customer")
                                           for i in range(50)}  # fmt: skip


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the call store"):
        CallStore(StoreOptions(path=blocker / "calls.db"))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the call store"):
        CallStore(StoreOptions(path=garbage))


def test_reopening_keeps_calls(db: Path | str) -> None:
    with CallStore(StoreOptions(path=db)) as store:
        fill(store)
    with CallStore(StoreOptions(path=db)) as store:
        assert [c.call_id for c in store.calls()] == [CALL_ID]


def test_a_second_connection_in_one_process_keeps_the_first_ones_locks(db_path: Path) -> None:
    """`qa serve` opens the store three times in one process (calls, workspace, search).
    Opening the file to check its mode dropped the POSIX locks of the connections already
    open (closing any descriptor of a file does), so another process closing its own
    connection took itself for the last one and deleted the WAL under them: their later
    commits were seen by no one else."""
    import subprocess
    import sys

    with CallStore(StoreOptions(path=db_path)) as first:
        fill(first)
        with CallStore(StoreOptions(path=db_path)):
            pass  # a second connection, opened and closed in this process
        peek = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
                " c.execute('SELECT count(*) FROM calls').fetchall(); c.close()")
        subprocess.run([sys.executable, "-c", peek, str(db_path)], check=True, timeout=60)
        first.add_segment(Segment(CALL_ID, Speaker.AGENT, 30.0, 31.0, " written after"))
        fresh = sqlite3.connect(db_path)
        try:
            assert fresh.execute("SELECT count(*) FROM segments WHERE text = ' written after'"
                                 ).fetchone() == (1,)
        finally:
            fresh.close()
