"""The live floor, user administration and blind calibration on a real PostgreSQL server (a
private one in a temporary folder, `tests.pgserver`), over HTTP like a browser.

`qa serve --db postgresql://...` serves a PostgreSQL copy of the seeded store (the fixture of
`tests/web/test_http_pg.py`); the flows are the SQLite tests' own (`test_live`, `test_admin`,
`test_calibration_blind`), run against it: a call stream pushes a segment written after it
opened and resumes from `Last-Event-ID`, the floor stream pushes starts, progress, prompts
and ends, an admin adds, disables and enables users and resets a password (audited), and a
calibration session hides another reviewer's override until it closes. A last test writes
from two connections at once, as two capture nodes do, to show the feed waits for a row whose
transaction commits after a later id was read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from qa.store import CallStore, StoreOptions, open_backend
from qa.web.live import Cursor, LiveRows
from tests.web import test_admin, test_calibration_blind, test_live
from tests.web.conftest import Served
from tests.web.test_http_pg import served_pg  # noqa: F401 (the fixture)


@pytest.fixture
def store(served_pg: Served) -> Iterator[CallStore]:  # noqa: F811
    with served_pg.store() as opened:
        yield opened


def test_a_call_stream_on_postgresql_pushes_new_rows_and_resumes(
    served_pg: Served, store: CallStore  # noqa: F811
) -> None:
    test_live.test_a_call_stream_pushes_new_rows_and_resumes_from_the_last_event_id(
        served_pg, store)


def test_the_floor_stream_on_postgresql(served_pg: Served, store: CallStore) -> None:  # noqa: F811
    test_live.test_the_floor_stream_starts_with_the_floor_then_pushes_changes(served_pg, store)


def test_streams_on_postgresql_are_authorised_per_stream(
    served_pg: Served, store: CallStore  # noqa: F811
) -> None:
    test_live.test_streams_are_authorised_per_stream(served_pg, store)


def test_admin_on_postgresql_adds_a_user_who_must_choose_a_password(
    served_pg: Served,  # noqa: F811
) -> None:
    test_admin.test_admin_adds_a_user_who_must_choose_a_password_first(served_pg)


def test_admin_on_postgresql_disables_and_enables_a_user(served_pg: Served) -> None:  # noqa: F811
    test_admin.test_disable_ends_sessions_and_enable_lets_the_user_back(served_pg)


def test_admin_on_postgresql_resets_a_password(served_pg: Served) -> None:  # noqa: F811
    test_admin.test_reset_password_logs_the_user_out_and_forces_a_change(served_pg)


def test_blind_calibration_on_postgresql(served_pg: Served) -> None:  # noqa: F811
    test_calibration_blind.test_other_reviewers_points_are_hidden_until_the_session_closes(
        served_pg)


def test_the_feed_waits_for_a_row_another_node_commits_late(
    served_pg: Served, store: CallStore  # noqa: F811
) -> None:
    """Node A takes a segment id and commits after node B stored the next one: the feed's
    read of the floor holds B's row back (its position must not pass A's), then returns both
    once A commits; a gap nobody fills is passed after `settle_s`."""
    call_id = test_live._start(store)
    rows = LiveRows(served_pg.db, settle_s=30.0)
    first, second = (open_backend(StoreOptions(path=served_pg.db)) for _ in range(2))
    insert = ('INSERT INTO segments (call_id, speaker, start, "end", text, words, language,'
              " avg_logprob, no_speech_prob) VALUES (?, 'agent', ?, ?, ?, '[]', 'en', 0, 0)"
              " RETURNING id")
    try:
        head = rows.head()
        first.begin()
        early = first.execute(insert, (call_id, 0.0, 1.0, "node a")).fetchone()[0]
        second.begin()
        late = second.execute(insert, (call_id, 1.0, 2.0, "node b")).fetchone()[0]
        second.commit()
        assert late > early > head.segment
        segments, _ = rows.after(head, 100)
        assert [r[0] for r in segments if r[0] >= early] == []  # B's row waits for A's
        first.commit()
        segments, _ = rows.after(head, 100)
        assert [r[5] for r in segments if r[0] >= early] == ["node a", "node b"]
        # One call's rows come from one node, in order: its read needs no wait.
        assert [r[5] for r in rows.after(head, 100, call_id)[0]] == ["node a", "node b"]

        # A rolled-back id is a gap for good: passed once it is settle_s old.
        rows.settle_s = 0.2
        mark = Cursor(late, head.event)
        first.begin()
        first.execute(insert, (call_id, 2.0, 3.0, "rolled back"))
        first.rollback()
        second.begin()
        kept = second.execute(insert, (call_id, 3.0, 4.0, "after the gap")).fetchone()[0]
        second.commit()
        assert rows.after(mark, 100)[0] == []
        time.sleep(0.3)
        assert [r[0] for r in rows.after(mark, 100)[0]] == [kept]
    finally:
        first.close()
        second.close()
        rows.close()
        store.end_call(call_id, duration=4.0, category=None, reason="hangup")
