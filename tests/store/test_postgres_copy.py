"""`qa db copy` and `qa db migrate`: a store moved between an SQLite file and a real
PostgreSQL server, both ways, with its ids, audit trail and labels; repeatable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qa.cli import main
from qa.errors import StoreError
from qa.store import BASE, SCHEMA_VERSION, CallStore, StoreOptions
from qa.types import CallInfo, Scorecard, ScoreItem, Segment, Speaker
from tests.pgserver import PASSWORD

from .conftest import CALL_ID, fill

SECOND = "call-0002"
RESCORED = Scorecard(SECOND, (ScoreItem("greeting", "Greets", 50, 20, ("hi",), (1.0,)),),
                     70.0, "<75")


def _source(path: Path) -> None:
    with CallStore(StoreOptions(path=path)) as store:
        fill(store)
        store.add_override(CALL_ID, "no_shirking", points=15, reviewer="ann", reason="quoted")
        store.add_override(CALL_ID, "no_shirking", points=20, reviewer="bob", reason="not said")
        store.add_label(CALL_ID, 3, "no_shirking", "no", reviewer="bob", reason="quoted")
        store.start_call(CallInfo(SECOND, "agent-8", "rtp://x", 1.8e9, (Speaker.AGENT,), 8000))
        store.add_segment(Segment(SECOND, Speaker.AGENT, 1.0, 2.0, " hi there"))
        store.save_scorecard(Scorecard(SECOND, (
            ScoreItem("greeting", "Greets", 50, 50, ("hi",), (1.0,)),
            ScoreItem("closing", "Closes", 50, 40, (), ()),
        ), 90.0, "85-90"))


def _contents(location: Path | str) -> tuple:
    with CallStore(StoreOptions(path=location, read_only=True)) as store:
        calls = store.calls(limit=None)
        return calls, [store.call(c.call_id) for c in calls], store.labels()


def _copy(capsys, source, target) -> dict[str, list[int]]:
    assert main(["db", "copy", "--from", str(source), "--to", str(target)]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    rows = [line.split() for line in out.splitlines()[2:]]
    return {r[0]: [int(x) for x in r[1:]] for r in rows}


def test_copy_to_postgresql_and_back_keeps_everything(
    db_path: Path, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _source(db_path)
    first = _copy(capsys, db_path, pg_url)
    assert first["calls"] == [2, 0, 0, 0] and first["segments"] == [5, 0, 0, 0]
    assert first["overrides"] == [2, 0, 0, 0] and first["labels"] == [1, 0, 0, 0]
    assert _contents(pg_url) == _contents(db_path)  # ids, trail and labels as they were

    # Again: nothing new, nothing changed.
    again = _copy(capsys, db_path, pg_url)
    assert all(added == 0 and updated == 0 for added, updated, _, _ in again.values())
    assert again["segments"][2] == 5

    # The server's ids go on after the copied ones.
    with CallStore(StoreOptions(path=pg_url)) as store:
        third = store.add_override(CALL_ID, "greeting", points=5, reviewer="cy", reason="late")
        store.add_segment(Segment(SECOND, Speaker.AGENT, 3.0, 4.0, " on the server"))
    assert third.id == 3

    # The source re-scores a call: the copy takes its scorecard and drops the surplus item.
    with CallStore(StoreOptions(path=db_path)) as store:
        store.save_scorecard(RESCORED)
    later = _copy(capsys, db_path, pg_url)
    assert later["scorecards"][:2] == [0, 1] and later["score_items"] == [0, 1, 3, 1]
    with CallStore(StoreOptions(path=pg_url)) as store:
        assert store.call(SECOND).scorecard == RESCORED

    # And back into a new file: the server's store as it is now.
    back = tmp_path / "back.db"
    _copy(capsys, pg_url, back)
    assert _contents(back) == _contents(pg_url)
    assert [o.id for o in _contents(back)[1][-1].overrides] == [1, 2, 3]


def test_a_target_holding_another_store_is_refused(
    db_path: Path, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _source(db_path)
    _copy(capsys, db_path, pg_url)
    other = tmp_path / "other.db"
    with CallStore(StoreOptions(path=other)) as store:
        store.start_call(CallInfo("other-call", "a", "test", 0.0, (), 8000))
        store.add_segment(Segment("other-call", Speaker.AGENT, 0.0, 1.0, " someone else"))
    assert main(["db", "copy", "--from", str(other), "--to", pg_url]) == 2
    err = capsys.readouterr().err
    assert "table segments: the target's row {'id': 1} differs" in err
    assert PASSWORD not in err
    with CallStore(StoreOptions(path=pg_url, read_only=True)) as store:
        assert store.call(CALL_ID).segments[0].text.startswith(" Hello")
    with pytest.raises(StoreError, match="same store"):
        from qa.db.copy import copy_store

        copy_store(StoreOptions(path=pg_url), StoreOptions(path=pg_url))


def test_migrate_creates_and_upgrades(
    db_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    for statement in BASE.statements("sqlite"):
        old.execute(statement)
    old.execute("INSERT INTO schema_version VALUES (1)")
    old.commit()
    old.close()
    assert main(["db", "migrate", str(db_path)]) == 0
    assert capsys.readouterr().out == (
        f"{db_path}: upgraded schema version 1 -> {SCHEMA_VERSION}\n")
    assert main(["db", "migrate", str(db_path)]) == 0
    assert "nothing to do" in capsys.readouterr().out

    assert main(["db", "migrate", pg_url]) == 0
    out = capsys.readouterr().out
    assert out.endswith(f": created schema version {SCHEMA_VERSION}\n") and PASSWORD not in out
    with CallStore(StoreOptions(path=pg_url, read_only=True)) as store:
        assert store.calls() == []

    missing = db_path.parent / "missing.db"
    assert main(["db", "migrate", str(missing)]) == 2
    assert "no call store here" in capsys.readouterr().err
    assert not missing.exists()


def _workspace_contents(location: Path | str) -> tuple:
    from qa.web.workspace import Workspace

    ws = Workspace(location)
    try:
        sessions = [(s.name, s.created_by, s.call_ids) for s in ws.calibrations()]
        return (ws.users(), ws.audit_log(), ws.disputes(), sessions,
                {s.id: ws.calibration_scores(s.id) for s in ws.calibrations()})
    finally:
        ws.close()


def test_copy_carries_the_workspace_and_the_target_indexes_the_transcripts(
    db_path: Path, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Accounts, the audit log, disputes with their decisions and calibration sessions with
    their scores move with the calls, both ways; login sessions and the search index do not
    (the target builds its own index, and nobody is logged in to a copy)."""
    from qa.web.search import CallFilter, CallSearch
    from qa.web.workspace import Workspace

    _source(db_path)
    ws = Workspace(db_path)
    user = ws.add_user("rita", "reviewer", "a-long-password")
    ws.add_user("ann", "agent", "a-long-password", agent_id="agent-7")
    ws.start_session(user)
    ws.audit("rita", "view_call", call_id=CALL_ID, address="10.0.0.7")
    dispute = ws.open_dispute(CALL_ID, "greeting", "ann", "I greeted")
    ws.decide_dispute(dispute.id, "rejected", "rita", "no")
    session = ws.start_calibration("week 1", "sam", [SECOND, CALL_ID])
    ws.add_calibration_scores(session.id, CALL_ID, "rita", {"greeting": 10.0})
    ws.close()
    search = CallSearch(db_path)
    assert search.sync() == 5  # the source's own index exists: it is not carried over
    search.close()

    with caplog.at_level("WARNING", logger="qa.db.copy"):
        first = _copy(capsys, db_path, pg_url)
    assert "not copied" not in caplog.text
    assert first["users"] == [2, 0, 0, 0] and first["audit"] == [1, 0, 0, 0]
    assert first["disputes"] == [1, 0, 0, 0] and first["dispute_decisions"] == [1, 0, 0, 0]
    assert first["calibration_calls"] == [2, 0, 0, 0]
    assert "sessions" not in first and "transcript_index" not in first
    assert _workspace_contents(pg_url) == _workspace_contents(db_path)
    assert Workspace(pg_url).authenticate("rita", "a-long-password").role == "reviewer"
    search = CallSearch(pg_url)
    try:
        assert [c.call_id for c in search.calls(CallFilter(text="not my problem"))] == [CALL_ID]
        assert [c.call_id for c in search.calls(CallFilter(text="不知道"))] == [CALL_ID]
    finally:
        search.close()
    # New rows on the server continue after the copied ids; the copy back carries them.
    ws = Workspace(pg_url)
    ws.audit("rita", "export", address="10.0.0.8")
    assert [e.id for e in ws.audit_log()] == [2, 1]
    ws.close()
    back = tmp_path / "back.db"
    assert _copy(capsys, pg_url, back)["audit"] == [2, 0, 0, 0]
    assert _workspace_contents(back) == _workspace_contents(pg_url)
