"""Fixtures for the call-store tests: a fresh store on each backend and one sample call.

`db` is a store location, once an SQLite file in a temporary folder and once a fresh database
on a real PostgreSQL server (`tests.pgserver`, one server per session); `store` and `filled`
follow it, so every test written against them runs on both backends. `db_path` is always the
SQLite file, for the tests of SQLite's own behaviour (WAL, file modes, its lock).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.store import CallStore, StoreOptions
from qa.types import (
    CallInfo,
    Event,
    EventKind,
    Scorecard,
    ScoreItem,
    Segment,
    Severity,
    Speaker,
    Word,
)
from tests.pgserver import PostgresServer, PostgresUnavailable

CALL_ID = "call-0001"
#: Epoch seconds of 2024-05-06 07:08:09 UTC.
STARTED_AT = 1714979289.0

SAMPLE_INFO = CallInfo(
    call_id=CALL_ID,
    agent_id="agent-7",
    source="file:examples/call.wav",
    started_at=STARTED_AT,
    channels=(Speaker.AGENT, Speaker.CUSTOMER),
    sample_rate=8000,
)

SAMPLE_SEGMENTS = (
    Segment(
        CALL_ID,
        Speaker.AGENT,
        0.5,
        2.5,
        " Hello, thank you for calling, how can I help?",
        (Word(0.5, 0.9, " Hello,", 0.98), Word(0.9, 1.2, " thank", 0.95)),
        True,
        "en",
        -0.21,
        0.01,
    ),
    Segment(CALL_ID, Speaker.CUSTOMER, 3.0, 6.0, " My card broke again.", language="en"),
    Segment(CALL_ID, Speaker.AGENT, 6.5, 8.0, " Sorry, that's not my problem.", language="en"),
    Segment(CALL_ID, Speaker.CUSTOMER, 9.0, 10.0, " 我不知道怎么办", language="zh"),
)

SAMPLE_EVENTS = (
    Event(CALL_ID, 0.9, EventKind.STEP_DONE, "greeting", Severity.INFO, 0.0, "hello",
          "", Speaker.AGENT, 0.9),
    Event(CALL_ID, 7.0, EventKind.FORBIDDEN_PHRASE, "no_shirking", Severity.CRITICAL, -10.0,
          "not my problem", "Do not say 'not my problem'", Speaker.AGENT, 7.9),
    Event(CALL_ID, 15.0, EventKind.STEP_MISSED, "verify_identity", Severity.WARNING, -5.0,
          "no identity check within 15 s", "Verify the caller's identity", Speaker.UNKNOWN),
)  # fmt: skip

SAMPLE_SCORECARD = Scorecard(
    CALL_ID,
    (
        ScoreItem("greeting", "Greets the caller", 10.0, 10.0, ("hello",), (0.9,)),
        ScoreItem("no_shirking", "No shirking phrases", 20.0, 10.0, ("not my problem",), (7.0,)),
        ScoreItem("verify_identity", "Verifies identity", 70.0, 65.0, (), ()),
    ),
    85.0,
    "80-85",
)


def fill(store: CallStore) -> None:
    """Writes the sample call through the public API, as the live pipeline would."""
    store.start_call(SAMPLE_INFO)
    for segment in SAMPLE_SEGMENTS:
        store.add_segment(segment)
    for event in SAMPLE_EVENTS:
        store.add_event(event)
    store.end_call(CALL_ID, duration=20.0, category="complaint", reason="hangup")
    store.save_scorecard(SAMPLE_SCORECARD)


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL server for the whole session (skipped where none is installed)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh database's URL (a store on it spools to the default place only if the server
    fails, which only the restart test makes happen, with a spool of its own)."""
    return pg_server.database()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "calls.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, db_path: Path) -> Path | str:
    """A store location on each backend: an SQLite file, a PostgreSQL URL."""
    if request.param == "sqlite":
        return db_path
    return request.getfixturevalue("pg_url")


def raw_connect(db: Path | str):
    """A plain driver connection to the store at `db` (autocommit), and the driver's
    integrity error class: to check what the database itself enforces."""
    if isinstance(db, Path):
        import sqlite3

        return sqlite3.connect(db, isolation_level=None), sqlite3.IntegrityError
    import psycopg

    return psycopg.connect(db, autocommit=True), psycopg.IntegrityError


@pytest.fixture
def store(db: Path | str):
    with CallStore(StoreOptions(path=db)) as s:
        yield s


@pytest.fixture
def filled(store: CallStore) -> CallStore:
    fill(store)
    return store
