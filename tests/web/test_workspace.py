"""The workspace's tables and policies on a real store, an SQLite file and a database on a
real PostgreSQL server (`db` runs each test on both): passwords, lockout, sessions, disputes'
limits and deadlines, append-only trails, search in English and Chinese, agreement figures,
and `qa users`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qa.errors import WorkspaceError
from qa.store import CallStore, StoreOptions
from qa.web.agreement import cohen_kappa, exact_agreement, item_agreement
from qa.web.options import AccountOptions, DisputeOptions
from qa.web.search import CallFilter, CallSearch, index_text, match_query, tsquery, tsvector
from qa.web.workspace import Workspace
from tests.store.conftest import CALL_ID, fill, raw_connect
from tests.web.conftest import qa


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A location with no store yet: an SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "calls.db"
    return request.getfixturevalue("pg_server").database()


@pytest.fixture
def db(empty_db: Path | str) -> Path | str:
    """A store holding the sample call (English and Chinese segments), on each backend."""
    with CallStore(StoreOptions(path=empty_db)) as store:
        fill(store)
    return empty_db


def _one(db: Path | str, sql: str) -> tuple:
    conn, _ = raw_connect(db)
    try:
        return tuple(conn.execute(sql).fetchone())
    finally:
        conn.close()


def test_password_is_stored_as_an_argon2id_hash(db: Path) -> None:
    ws = Workspace(db)
    ws.add_user("rita", "reviewer", "a-long-password")
    stored = _one(db, "SELECT password_hash FROM users")[0]
    assert stored.startswith("$argon2id$") and "a-long-password" not in stored
    assert ws.authenticate("rita", "a-long-password").role == "reviewer"
    with pytest.raises(WorkspaceError, match="invalid"):
        ws.authenticate("rita", "A-long-password")


def test_bad_accounts_are_refused(db: Path) -> None:
    ws = Workspace(db)
    with pytest.raises(WorkspaceError, match="too short"):
        ws.add_user("rita", "reviewer", "short")
    with pytest.raises(WorkspaceError, match="role 'boss'"):
        ws.add_user("rita", "boss", "a-long-password")
    with pytest.raises(WorkspaceError, match="agent-id"):
        ws.add_user("ann", "agent", "a-long-password")
    with pytest.raises(WorkspaceError, match="username"):
        ws.add_user("a b", "reviewer", "a-long-password")
    ws.add_user("rita", "reviewer", "a-long-password")
    with pytest.raises(WorkspaceError, match="already exists"):
        ws.add_user("rita", "admin", "a-long-password")


def test_lockout_after_repeated_failures_and_expiry(db: Path) -> None:
    ws = Workspace(db, AccountOptions(max_failures=3, lockout_s=3.0))
    ws.add_user("rita", "reviewer", "a-long-password")
    for _ in range(3):
        with pytest.raises(WorkspaceError, match="invalid"):
            ws.authenticate("rita", "wrong-password")
    with pytest.raises(WorkspaceError, match="locked"):
        ws.authenticate("rita", "a-long-password")
    time.sleep(3.1)
    assert ws.authenticate("rita", "a-long-password").username == "rita"


def test_sessions_are_stored_hashed_and_end_when_the_user_is_disabled(db: Path) -> None:
    ws = Workspace(db)
    user = ws.add_user("rita", "reviewer", "a-long-password")
    token, session = ws.start_session(user)
    stored = _one(db, "SELECT token_hash FROM sessions")[0]
    assert token not in stored
    assert ws.session(token).user.username == "rita"
    assert Workspace.csrf_ok(session, session.csrf) and not Workspace.csrf_ok(session, "x")
    ws.set_disabled("rita")
    assert ws.session(token) is None
    with pytest.raises(WorkspaceError, match="disabled"):
        ws.authenticate("rita", "a-long-password")


def test_dispute_limit_per_call_and_deadline(db: Path) -> None:
    # A 1 s deadline: the first dispute must still be open for the next three calls, which
    # took up to 25 ms under load (the 0.09 s deadline before left too little slack).
    ws = Workspace(db, disputes=DisputeOptions(per_call=2, deadline_days=1 / 86400))
    first = ws.open_dispute(CALL_ID, "greeting", "ann", "I greeted")
    with pytest.raises(WorkspaceError, match="open dispute"):
        ws.open_dispute(CALL_ID, "greeting", "ann", "again")
    ws.open_dispute(CALL_ID, "no_shirking", "ann", "I did not shirk")
    with pytest.raises(WorkspaceError, match="limit per evaluation is 2"):
        ws.open_dispute(CALL_ID, "verify_identity", "ann", "I verified")
    time.sleep(max(0.0, first.deadline - time.time()) + 0.1)  # the deadline passes
    assert ws.dispute(first.id).state == "expired"
    with pytest.raises(WorkspaceError, match="expired, not open"):
        ws.decide_dispute(first.id, "accepted", "rita", "too late")


def test_dispute_outcomes_are_configurable(db: Path) -> None:
    ws = Workspace(db, disputes=DisputeOptions(outcomes=("upheld", "denied")))
    dispute = ws.open_dispute(CALL_ID, "greeting", "ann", "I greeted")
    with pytest.raises(WorkspaceError, match="upheld, denied"):
        ws.decide_dispute(dispute.id, "accepted", "rita", "yes")
    assert ws.decide_dispute(dispute.id, "upheld", "rita", "yes").state == "upheld"


@pytest.mark.parametrize("table", ["audit", "disputes", "dispute_decisions",
                                   "calibration_scores"])
def test_trails_are_append_only(db: Path, table: str) -> None:
    ws = Workspace(db)
    ws.audit("rita", "view_call", call_id=CALL_ID)
    d = ws.open_dispute(CALL_ID, "greeting", "ann", "I greeted")
    ws.decide_dispute(d.id, "rejected", "rita", "no")
    s = ws.start_calibration("w1", "sam", [CALL_ID])
    ws.add_calibration_scores(s.id, CALL_ID, "rita", {"greeting": 10})
    con, integrity = raw_connect(db)
    try:
        with pytest.raises(integrity, match="append-only"):
            con.execute(f"UPDATE {table} SET id = id")
        with pytest.raises(integrity, match="append-only"):
            con.execute(f"DELETE FROM {table}")
        if not isinstance(db, Path):  # PostgreSQL: TRUNCATE skips row triggers
            with pytest.raises(integrity, match="append-only"):
                con.execute(f"TRUNCATE {table} CASCADE")
    finally:
        con.close()
    assert ws.audit_log(action="view_call")[0].call_id == CALL_ID


def test_free_text_is_redacted(db: Path) -> None:
    ws = Workspace(db)
    d = ws.open_dispute(CALL_ID, "greeting", "ann", "call me on 415-555-1234")
    assert "555" not in d.comment and "[PHONE]" in d.comment


def test_cohen_kappa_on_a_textbook_table() -> None:
    # 50 items: both yes 20, a yes b no 5, a no b yes 10, both no 15 (Wikipedia's example).
    a = [1] * 25 + [0] * 25
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert exact_agreement(a, b) == pytest.approx(0.7)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([5, 5], [5, 5]) == 1.0
    assert cohen_kappa([], []) is None


def test_item_agreement_between_reviewers_and_against_the_scorer() -> None:
    ratings = {"r1": {"c1": 10, "c2": 0}, "r2": {"c1": 10, "c2": 10}}
    result = item_agreement("closing", ratings, {"c1": 10, "c2": 0})
    assert result.calls == 2
    assert result.between_exact == 0.5 and result.between_kappa == pytest.approx(0.0)
    # r1 matches the scorer exactly (kappa 1); r2 gives 10 always: kappa 0.
    assert result.auto_exact == 0.75 and result.auto_kappa == pytest.approx(0.5)


def test_chinese_text_is_indexed_as_character_pairs() -> None:
    assert index_text("我很生气!") == " 我很 很生 生气 !"
    assert match_query("生氣") == '"生气"'
    assert match_query('x" OR call_id:*') == '"x or call id"'  # no operator survives
    assert match_query("退") == '"退" *'
    assert match_query("  ,, ") is None


def test_postgresql_terms_match_what_the_sqlite_index_holds() -> None:
    assert tsvector("我很生气!") == "'我很':1 '很生':2 '生气':3"
    assert tsvector("Not my PROBLEM, café") == "'not':1 'my':2 'problem':3 'cafe':4"
    assert tsquery("生氣") == "'生气'"
    assert tsquery("not my problem") == "'not' <-> 'my' <-> 'problem'"
    assert tsquery("x' | !call_id:*") == "'x' <-> 'call' <-> 'id'"  # no operator survives
    assert tsquery("退") == "'退':*"
    assert tsquery("  ,, ") is None


def test_users_command_adds_lists_and_disables(empty_db: Path | str) -> None:
    db = str(empty_db)
    env = {"QA_PASSWORD": "a-long-password"}
    done = qa("users", "add", "ann", "--role", "agent", "--agent-id", "agent-7", "--db", db,
              env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert qa("users", "add", "ann", "--role", "admin", "--db", db, env=env,
              timeout=60).stderr.strip() == "qa: error: user 'ann' already exists"
    listed = qa("users", "list", "--db", db, timeout=60).stdout.splitlines()
    assert listed[1].split()[:4] == ["ann", "agent", "agent-7", "active"]
    assert qa("users", "disable", "ann", "--db", db, timeout=60).returncode == 0
    assert qa("users", "list", "--db", db, timeout=60).stdout.splitlines()[1].split()[3] == (
        "disabled")
    missing = qa("users", "disable", "zed", "--db", db, timeout=60)
    assert missing.returncode == 2 and "no user 'zed'" in missing.stderr
    ws = Workspace(empty_db)
    assert [e.action for e in ws.audit_log(username="cli")] == ["user_disable", "user_add"]


def test_search_finds_english_and_chinese_phrases(db: Path | str) -> None:
    search = CallSearch(db)
    try:
        found, quotes = search.search(CallFilter(text="NOT my problem"))
        assert [c.call_id for c in found] == [CALL_ID]
        assert quotes[CALL_ID] == "Sorry, that's not my problem."
        # A phrase, not a bag of words; Chinese inside a run; traditional folded.
        assert search.calls(CallFilter(text="problem my not")) == []
        assert [c.call_id for c in search.calls(CallFilter(text="知道"))] == [CALL_ID]
        assert [c.call_id for c in search.calls(CallFilter(text="不知道怎麼辦"))] == [CALL_ID]
        assert [c.call_id for c in search.calls(CallFilter(text="怎"))] == [CALL_ID]
        assert search.calls(CallFilter(text="知不道")) == []
        assert search.calls(CallFilter(text="card broke", agent="agent-9")) == []
    finally:
        search.close()


def test_a_segment_stored_after_a_search_is_found_by_the_next(db: Path | str) -> None:
    from qa.types import Segment, Speaker

    search = CallSearch(db)
    try:
        assert search.calls(CallFilter(text="refund by friday")) == []
        with CallStore(StoreOptions(path=db)) as store:
            store.add_segment(Segment(CALL_ID, Speaker.AGENT, 11.0, 12.0,
                                      " You will get the refund by Friday.", language="en"))
        assert [c.call_id for c in search.calls(CallFilter(text="refund by friday"))] == [
            CALL_ID]
        assert search.sync() == 0  # each segment is indexed once
    finally:
        search.close()


def test_a_deleted_call_leaves_the_search_index(db: Path | str) -> None:
    search = CallSearch(db)
    try:
        assert [c.call_id for c in search.calls(CallFilter(text="not my problem"))] == [CALL_ID]
        assert [c.call_id for c in search.calls(CallFilter(text="不知道"))] == [CALL_ID]
        with CallStore(StoreOptions(path=db)) as store:
            store.delete_call(CALL_ID)  # retention
        assert search.calls(CallFilter(text="not my problem")) == []
        # The words themselves are gone, not only hidden.
        assert _one(db, "SELECT count(*) FROM transcript_index") == (0,)
    finally:
        search.close()


def _store_at_version(location: Path | str, version: int) -> None:
    """Creates the schema as a release of `version` did (its steps only)."""
    from qa.store import BASE, MIGRATIONS, open_backend

    db = open_backend(StoreOptions(path=location))
    try:
        db.begin()
        for step in (BASE, *MIGRATIONS):
            if step.version <= version:
                for statement in step.statements(db.dialect):
                    db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        db.commit()
    finally:
        db.close()


def test_a_version_5_store_upgrades_its_search_and_calibration_order(
    empty_db: Path | str,
) -> None:
    """Segments stored before the step that indexes them on PostgreSQL are searchable after
    it, and a calibration session keeps the order its calls were listed in."""
    _store_at_version(empty_db, 5)
    con, _ = raw_connect(empty_db)
    mark = "?" if isinstance(empty_db, Path) else "%s"
    try:
        for call in ("call-b", "call-a"):
            con.execute("INSERT INTO calls (call_id, agent_id, source, started_at, channels,"
                        f" sample_rate) VALUES ({mark}, 'agent-7', 'rtp', 1.0, 'agent', 8000)",
                        (call,))
            con.execute('INSERT INTO segments (call_id, speaker, start, "end", text, words,'
                        " language, avg_logprob, no_speech_prob) VALUES"
                        f" ({mark}, 'agent', 0, 1, {mark}, '[]', 'zh', 0, 0)",
                        (call, f"{call} says 那不归我管"))
        con.execute("INSERT INTO calibration_sessions (name, created_by, created_at)"
                    " VALUES ('old', 'sam', 1.0)")
        for call in ("call-b", "call-a"):  # listed b first
            con.execute(f"INSERT INTO calibration_calls VALUES (1, {mark})", (call,))
        if not isinstance(empty_db, Path):
            con.commit()
    finally:
        con.close()
    with CallStore(StoreOptions(path=empty_db)) as store:
        assert store.upgraded_from == 5
    search = CallSearch(empty_db)
    ws = Workspace(empty_db)
    try:
        assert {c.call_id for c in search.calls(CallFilter(text="不归我管"))} == {
            "call-a", "call-b"}
        assert [c.call_id for c in search.calls(CallFilter(text="call-a says"))] == [
            "call-a"]
        if isinstance(empty_db, Path):  # SQLite kept the order; PostgreSQL had none to keep
            assert ws.calibration(1).call_ids == ("call-b", "call-a")
        new = ws.start_calibration("new", "sam", ["call-b", "call-a"])
        assert ws.calibration(new.id).call_ids == ("call-b", "call-a")
    finally:
        search.close()
        ws.close()


def test_the_workspace_rides_out_a_postgresql_restart(tmp_path: Path, pg_server) -> None:
    """The server restarts under a running workspace: the next login reconnects by itself
    (the store's backend layer), nothing written before is lost."""
    url = pg_server.database()
    with CallStore(StoreOptions(path=url)) as store:
        fill(store)
    ws = Workspace(url)
    search = CallSearch(url)
    try:
        ws.add_user("rita", "reviewer", "a-long-password")
        pg_server.stop()
        pg_server.start()
        assert ws.authenticate("rita", "a-long-password").username == "rita"
        ws.audit("rita", "login")
        assert [c.call_id for c in search.calls(CallFilter(text="不知道"))] == [CALL_ID]
        assert [e.action for e in ws.audit_log()] == ["login"]
    finally:
        ws.close()
        search.close()


def test_a_search_answers_from_the_index_while_the_store_is_locked(tmp_path: Path) -> None:
    """Another process holding the write lock past the wait delays indexing, not the search:
    what is indexed is found, the rest on the next search."""
    from qa.types import Segment, Speaker

    path = tmp_path / "calls.db"
    with CallStore(StoreOptions(path=path)) as store:
        fill(store)
    search = CallSearch(StoreOptions(path=path, busy_timeout=0.2))
    try:
        assert search.calls(CallFilter(text="not my problem"))
        with CallStore(StoreOptions(path=path)) as store:
            store.add_segment(Segment(CALL_ID, Speaker.AGENT, 11.0, 12.0, " refund by friday"))
        holder, _ = raw_connect(path)
        holder.execute("BEGIN IMMEDIATE")
        try:
            assert search.calls(CallFilter(text="refund by friday")) == []
            assert search.calls(CallFilter(text="not my problem"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert [c.call_id for c in search.calls(CallFilter(text="refund by friday"))] == [
            CALL_ID]
    finally:
        search.close()
