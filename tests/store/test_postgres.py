"""The call store on a real PostgreSQL server: what a shared server adds to the tests that run
on both backends (`db` fixture): a server restarted mid-run, writers in several processes,
nodes that must not close each other's calls, read-only review, and passwords kept out of
every message. The server is real (`tests.pgserver`); nothing here is mocked."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.db import mask_url, parse_location
from qa.errors import StoreError
from qa.logs import scrub
from qa.store import CallStore, StoreOptions
from qa.types import CallInfo, Event, EventKind, Scorecard, ScoreItem, Segment, Severity, Speaker
from tests.pgserver import PASSWORD, PostgresServer

from .conftest import CALL_ID, SAMPLE_INFO, fill


def test_urls_are_told_from_paths_and_masked() -> None:
    url = f"postgresql://qa:{PASSWORD}@db.example:5432/calls?sslmode=require"
    assert parse_location(url) == url
    assert parse_location("postgres://h/db") == "postgres://h/db"
    assert parse_location("~/calls.db") == Path("~/calls.db").expanduser()
    assert mask_url(url) == "postgresql://qa:***@db.example:5432/calls?sslmode=require"
    assert mask_url(f"postgresql://h/db?user=qa&password={PASSWORD}") == \
        "postgresql://h/db?user=qa&password=***"
    assert StoreOptions(path=url).where == mask_url(url)
    # One local spool per database, named without the password (any password, same spool).
    spool = StoreOptions(path=url).spool_path
    assert spool.parent.name == "spool" and spool.name.startswith("postgresql-")
    assert spool == StoreOptions(path=url.replace(PASSWORD, "other")).spool_path
    assert spool != StoreOptions(path=url.replace("/calls", "/other")).spool_path
    assert PASSWORD not in scrub(f"cannot reach {url}; conninfo password={PASSWORD} host=h")


def test_a_wrong_password_is_refused_without_showing_it(pg_url: str) -> None:
    wrong = pg_url.replace(PASSWORD, "Wrong-pass-123")
    with pytest.raises(StoreError) as info:
        CallStore(StoreOptions(path=wrong, busy_timeout=0.5))
    assert "Wrong-pass-123" not in str(info.value)
    assert "qa:***@127.0.0.1" in str(info.value)
    assert "password authentication failed" in str(info.value)


def test_the_server_restarting_mid_call_loses_nothing(
    pg_server: PostgresServer, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops (as a restart does) while a call is being written: writes are
    retried for `busy_timeout`, spooled to the local spool, and replayed in order, once each,
    when the server is back; the store reconnects by itself."""
    caplog.set_level(logging.DEBUG)
    options = StoreOptions(path=pg_url, busy_timeout=0.5, spool=tmp_path / "pg.spool")
    store = CallStore(options)
    try:
        store.start_call(SAMPLE_INFO)
        store.add_segment(Segment(CALL_ID, Speaker.AGENT, 0.0, 0.5, "segment 0"))
        pg_server.stop()
        try:
            for i in range(1, 5):
                store.add_segment(Segment(CALL_ID, Speaker.AGENT, i, i + 0.5, f"segment {i}"))
            store.end_call(CALL_ID, duration=9.0, category=None, reason="hangup")
            assert store.spooled == 5 and store.write_retries >= 1
            assert len(options.spool_path.read_text().splitlines()) == 5
        finally:
            pg_server.start()
        time.sleep(1.1)  # the next write retries the spool (at most once a second)
        store.add_event(Event(CALL_ID, 9.5, EventKind.STEP_DONE, "greeting", Severity.INFO))
        record = store.call(CALL_ID)
        assert [s.text for s in record.segments] == [f"segment {i}" for i in range(5)]
        assert record.end_reason == "hangup" and len(record.events) == 1
        assert options.spool_path.stat().st_size == 0
    finally:
        store.close()
    # The warnings name the store by its URL without the password (masked by the store, or
    # blanked again by the log filter when `qa.cli.main` installed it earlier in the session).
    assert PASSWORD not in caplog.text
    assert "failing" in caplog.text and "@127.0.0.1:" in caplog.text


WRITER = """
import sys
from qa.types import CallInfo
from qa.store import CallStore, StoreOptions
from qa.types import Event, EventKind, Scorecard, ScoreItem, Segment, Severity, Speaker
url, node, calls, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with CallStore(StoreOptions(path=url)) as store:
    for n in range(calls):
        call = f"{node}-call-{n}"
        store.start_call(CallInfo(call, node, "test", n, (Speaker.AGENT,), 8000))
        for i in range(5):
            store.add_segment(Segment(call, Speaker.AGENT, i, i + 0.5, f"{node} {n} {i}"))
        store.add_event(Event(call, 1.0, EventKind.STEP_DONE, "greeting", Severity.INFO))
        store.end_call(call, duration=5.0, category=None, reason="hangup")
        store.save_scorecard(Scorecard(call, (ScoreItem("greeting", "g", 10, 10, (), ()),),
                                       100.0, "95-100"))
    for i in range(overrides):
        store.add_override("shared", "greeting", points=float(i % 11), reviewer=node,
                           reason=f"round {i}")
    assert store.spooled == 0
"""


def test_writers_in_two_processes_share_one_server(pg_url: str, repo: Path) -> None:
    """Two nodes write calls at once, and both override the same item of one call: every
    row arrives, and the audit trail stays a chain (each override's old points are the
    previous one's new points), because the call is locked while an override is added."""
    with CallStore(StoreOptions(path=pg_url)) as store:
        store.start_call(CallInfo("shared", "a", "test", 0.0, (), 8000))
        store.save_scorecard(Scorecard("shared", (ScoreItem("greeting", "g", 10, 10, (), ()),),
                                       100.0, "95-100"))
    env = {**os.environ, "PYTHONPATH": str(repo)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, node, "15", "40"],
                                env=env, stderr=subprocess.PIPE, text=True)
               for node in ("node-a", "node-b")]  # fmt: skip
    for writer in writers:
        _, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
    with CallStore(StoreOptions(path=pg_url, read_only=True)) as store:
        calls = store.calls(limit=None)
        assert len(calls) == 31
        for node in ("node-a", "node-b"):
            record = store.call(f"{node}-call-14")
            assert [s.text for s in record.segments] == [f"{node} 14 {i}" for i in range(5)]
            assert record.scorecard is not None and record.end_reason == "hangup"
        trail = store.call("shared").overrides
    assert len(trail) == 80
    assert {o.reviewer for o in trail} == {"node-a", "node-b"}
    assert [o.id for o in trail] == sorted(o.id for o in trail)
    assert trail[0].old_points == 10.0
    for before, after in zip(trail, trail[1:], strict=False):
        assert after.old_points == before.new_points


def test_a_node_never_closes_another_nodes_calls(pg_url: str) -> None:
    """A call left open on another host (its process cannot be checked from here) stays
    open; this host's dead process's call is closed."""
    import psycopg

    with CallStore(StoreOptions(path=pg_url)) as store:
        fill(store)
        for call, host in (("other-node-call", "node-elsewhere"), ("here-call", None)):
            store.start_call(CallInfo(call, "a", "test", 0.0, (), 8000))
            with psycopg.connect(pg_url, autocommit=True) as raw:
                # pid 2**22 + 1 is above Linux's pid_max default: no such process anywhere.
                raw.execute("UPDATE calls SET owner_pid = 4194305, owner_token = ''"
                            + (", owner_host = %s" if host else "") + " WHERE call_id = %s",
                            (host, call) if host else (call,))
        assert store.close_interrupted() == ["here-call"]
        assert store.call("other-node-call").end_reason is None


def test_review_reads_through_a_read_only_transaction(pg_url: str, pg_server) -> None:
    import psycopg

    with CallStore(StoreOptions(path=pg_url)) as store:
        fill(store)
    with CallStore(StoreOptions(path=pg_url, read_only=True)) as store:
        assert store.call(CALL_ID).info.agent_id == "agent-7"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            store.add_override(CALL_ID, "greeting", points=1, reviewer="x", reason="y")
        assert store.call(CALL_ID).overrides == ()
    # A database that is not a call store is refused, and left without tables.
    empty = pg_server.database()
    with pytest.raises(StoreError, match="not a qa call store .*PostgreSQL database without"):
        CallStore(StoreOptions(path=empty, read_only=True))
    with psycopg.connect(empty) as raw:
        assert raw.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                           ).fetchone()[0] == 0


def test_nodes_opening_a_new_database_at_once_create_one_schema(pg_url: str,
                                                               repo: Path) -> None:
    """Several processes open an empty database together: the schema lock lets one create
    it; the others find it made (no duplicate-table errors)."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    script = ("import sys\nfrom qa.store import CallStore, StoreOptions\n"
              "CallStore(StoreOptions(path=sys.argv[1])).close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_url], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with CallStore(StoreOptions(path=pg_url, read_only=True)) as store:
        assert store.calls() == []


def test_without_psycopg_the_message_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.errors import DependencyError

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(DependencyError, match=r"pip install 'qa\[postgres\]'"):
        CallStore(StoreOptions(path="postgresql://qa@127.0.0.1:1/qa"))
