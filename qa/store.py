"""The call store: calls, segments, events, scorecards and reviewer overrides, in SQLite (the
embedded default) or PostgreSQL (one server shared by many nodes).

`StoreOptions.path` is a file path or a `postgresql://user:password@host:port/database` URL;
both backends (`qa.db.sqlite`, `qa.db.postgres`) hold the same logical schema, migrated by the
same steps, and the store behaves the same on either. Passwords never reach a log line or a
message (`StoreOptions.where` is the location with the password masked).

Every write is its own committed transaction, so a process killed mid-call loses at most
what it had not yet handed to the store (the utterance in flight). On SQLite, WAL mode with
`synchronous=NORMAL` is durable against a killed process and lets review commands read while
a live pipeline writes; the file and its `-wal`/`-shm` companions are owner-only.

Writes that fail for a passing reason (another process holds the lock, the disk is full, an
I/O error, the PostgreSQL server restarting or out of reach) are retried with backoff for
`StoreOptions.busy_timeout` seconds, then spooled to a local file (`qa.spool`) and replayed in
order once the database takes writes again, so a failing store never stops the live pipeline
and loses nothing. Each call records the host and process that started it, so a later run on
the same host can close the calls of a process that was killed (`close_interrupted`); other
nodes' calls are never touched.

Personal data is redacted (`qa.redact`) before it reaches the disk unless the options say
otherwise. Overrides and labels are append-only audit trails (triggers refuse to change them,
on either backend); the automatic scorecard is kept as the scorer wrote it and the effective
one is computed on read.

Schema changes: `MIGRATIONS` is the list of steps from version 1 (`BASE`) up to
`SCHEMA_VERSION`. To change the schema, append one `Step` with the next version number: its
`sql` runs on both dialects (write SQLite's types; `REAL` becomes `DOUBLE PRECISION` and an
`INTEGER PRIMARY KEY` an identity column on PostgreSQL), its `sqlite` and `postgresql`
statements run on that dialect only (triggers: see `_append_only`). Never edit a released
step. A new table that `qa db copy` should carry goes into `COPY_TABLES` (parents before the
tables that reference them). Opening a store for writing upgrades it, all steps in one
transaction; `qa db migrate` does only that.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa import types as _types
from qa.db import Backend, is_url, mask_url, parse_location
from qa.errors import CallNotFoundError, StoreError
from qa.redact import redact
from qa.redact import redact_words as _redact_words
from qa.rules.scoring import band
from qa.spool import Spool
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

__all__ = [
    "BASE",
    "COPY_TABLES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CallRecord",
    "CallStore",
    "CallListing",
    "Label",
    "Override",
    "Step",
    "StoreOptions",
    "default_db_path",
    "check_schema",
    "data_dir",
    "migrate",
    "open_backend",
    "upgrade",
]

log = logging.getLogger("qa.store")

#: Seconds one write attempt waits for a lock; the retry loop adds backoff between attempts,
#: so a stop request is noticed within about this long.
_ATTEMPT_WAIT_S = 0.25
#: Seconds between attempts to replay the spool while the store keeps failing.
_REPLAY_INTERVAL_S = 1.0
#: Column names the spool may carry (it is replayed into SQL).
_COLUMN = re.compile(r"^[a-z_]+$")
#: Spool keys deleted per statement once replayed (well under SQLite's variable limit).
_KEYS_PER_DELETE = 500
#: end_reason of a call whose process died before it ended.
INTERRUPTED = "interrupted"


# --- the schema: version 1 and the steps after it -------------------------------------------

@dataclass(frozen=True, slots=True)
class Step:
    """One schema version, as statements for each dialect.

    Attributes:
        version: The version this step upgrades to (the previous step's plus one).
        why: What the step is for (shown by `qa db migrate`).
        sql: Statements for both dialects, in SQLite's types (translated for PostgreSQL).
        sqlite: Statements for SQLite only, run after `sql`.
        postgresql: Statements for PostgreSQL only, run after `sql`.
    """

    version: int
    why: str
    sql: tuple[str, ...] = ()
    sqlite: tuple[str, ...] = ()
    postgresql: tuple[str, ...] = ()

    def statements(self, dialect: str) -> tuple[str, ...]:
        """The step's statements for `dialect` (`sqlite` or `postgresql`)."""
        if dialect == "postgresql":
            return tuple(_for_postgresql(s) for s in self.sql) + self.postgresql
        return self.sql + self.sqlite


def _for_postgresql(sql: str) -> str:
    """SQLite DDL in PostgreSQL's types: REAL is single precision there, and an integer key
    is an identity column that still accepts explicit ids (so `qa db copy` keeps them)."""
    sql = re.sub(r"\bINTEGER PRIMARY KEY(?: AUTOINCREMENT)?",
                 "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", sql)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)


#: PostgreSQL's trigger function behind every append-only table; its error is an integrity
#: violation, like SQLite's RAISE(ABORT).
_PG_APPEND_ONLY = """CREATE OR REPLACE FUNCTION qa_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'integrity_constraint_violation',
        MESSAGE = TG_TABLE_NAME || ' are an append-only audit trail';
END $$"""


def _append_only(table: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(SQLite, PostgreSQL) statements that refuse UPDATE and DELETE (and, on PostgreSQL,
    TRUNCATE) of `table`'s rows."""
    message = f"'{table} are an append-only audit trail'"
    sqlite = tuple(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}\n"
        f"BEGIN SELECT RAISE(ABORT, {message}); END"
        for verb in ("UPDATE", "DELETE")
    )
    postgresql = (
        _PG_APPEND_ONLY,
        f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION qa_append_only()",
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION qa_append_only()",
    )
    return sqlite, postgresql


_OVERRIDES_APPEND_ONLY = _append_only("overrides")
_LABELS_APPEND_ONLY = _append_only("labels")
#: The workspace's audit trails: the audit log, disputes and their decisions, calibration scores.
_WORKSPACE_APPEND_ONLY = [
    _append_only(t) for t in ("audit", "disputes", "dispute_decisions", "calibration_scores")
]
_WORKSPACE_APPEND_ONLY_SQLITE = tuple(s for sqlite, _ in _WORKSPACE_APPEND_ONLY for s in sqlite)
_WORKSPACE_APPEND_ONLY_PG = tuple(s for _, pg in _WORKSPACE_APPEND_ONLY for s in pg)

#: Version 1, the schema every store starts from; `MIGRATIONS` take it to `SCHEMA_VERSION`.
BASE = Step(
    1,
    "calls, segments, events, scorecards and the overrides audit trail",
    sql=(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        """CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    source TEXT NOT NULL,
    started_at REAL NOT NULL,
    channels TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    ended_at REAL,
    duration REAL,
    category TEXT,
    end_reason TEXT
)""",
        """CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    speaker TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    text TEXT NOT NULL,
    words TEXT NOT NULL,
    language TEXT NOT NULL,
    avg_logprob REAL NOT NULL,
    no_speech_prob REAL NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS segments_call ON segments(call_id, start)",
        """CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    points REAL NOT NULL,
    evidence TEXT NOT NULL,
    message TEXT NOT NULL,
    speaker TEXT NOT NULL,
    "end" REAL
)""",
        "CREATE INDEX IF NOT EXISTS events_call ON events(call_id, time)",
        """CREATE TABLE IF NOT EXISTS scorecards (
    call_id TEXT PRIMARY KEY REFERENCES calls(call_id),
    total REAL NOT NULL,
    band TEXT NOT NULL,
    saved_at REAL NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS score_items (
    call_id TEXT NOT NULL REFERENCES scorecards(call_id),
    position INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    description TEXT NOT NULL,
    points_possible REAL NOT NULL,
    points_awarded REAL NOT NULL,
    evidence TEXT NOT NULL,
    times TEXT NOT NULL,
    PRIMARY KEY (call_id, position)
)""",
        """CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    rule_id TEXT NOT NULL,
    old_points REAL NOT NULL,
    new_points REAL NOT NULL,
    reviewer TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS overrides_call ON overrides(call_id, id)",
    ),
    sqlite=_OVERRIDES_APPEND_ONLY[0],
    postgresql=_OVERRIDES_APPEND_ONLY[1],
)

#: The version 1 schema as one SQLite script (to build old stores in tests).
_SCHEMA = "".join(f"{s};\n" for s in BASE.statements("sqlite"))

#: The steps after version 1, oldest first; append new ones at the end (see the docstring).
MIGRATIONS: tuple[Step, ...] = (
    Step(
        2,
        "who started each call (to close a dead process's calls); spooled writes replayed",
        sql=(
            "ALTER TABLE calls ADD COLUMN owner_pid INTEGER",
            "ALTER TABLE calls ADD COLUMN owner_host TEXT",
            "ALTER TABLE calls ADD COLUMN owner_token TEXT",
            # Keys of spooled writes already replayed, so a cut-short replay never writes twice.
            "CREATE TABLE IF NOT EXISTS spool_applied (key TEXT PRIMARY KEY)",
        ),
    ),
    Step(
        3,
        "how each rule event matched (exact, fuzzy, pinyin, intent); reviewers' labels",
        sql=(
            "ALTER TABLE events ADD COLUMN match_kind TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE events ADD COLUMN match_score REAL",
            "ALTER TABLE events ADD COLUMN match_example TEXT NOT NULL DEFAULT ''",
            """CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    segment_id INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('yes', 'no')),
    text TEXT NOT NULL,
    speaker TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS labels_rule ON labels(rule_id, id)",
        ),
        sqlite=_LABELS_APPEND_ONLY[0],
        postgresql=_LABELS_APPEND_ONLY[1],
    ),
    Step(
        4,
        "each call's recording (qa.recordings); calls purged by retention but kept for an "
        "audit trail",
        sql=(
            # The file lives outside the database; `masked_spans` is JSON:
            # [[channel, start, end, kind], ...].
            """CREATE TABLE IF NOT EXISTS recordings (
    call_id TEXT PRIMARY KEY REFERENCES calls(call_id),
    path TEXT NOT NULL,
    codec TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    bytes INTEGER NOT NULL,
    masked_spans TEXT NOT NULL,
    created_at REAL NOT NULL
)""",
            "ALTER TABLE calls ADD COLUMN purged_at REAL",
        ),
    ),
    Step(
        5,
        "the review workspace (qa.web): users, sessions, the audit log, disputes, "
        "calibration; the transcript search index (SQLite)",
        sql=(
            """CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('agent', 'reviewer', 'supervisor', 'admin')),
    agent_id TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    address TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS audit_call ON audit(call_id, id)",
            """CREATE TABLE IF NOT EXISTS disputes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    rule_id TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    opened_at REAL NOT NULL,
    deadline REAL NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS disputes_call ON disputes(call_id, id)",
            """CREATE TABLE IF NOT EXISTS dispute_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id INTEGER NOT NULL REFERENCES disputes(id),
    state TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    decided_at REAL NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS calibration_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
)""",
            """CREATE TABLE IF NOT EXISTS calibration_calls (
    session_id INTEGER NOT NULL REFERENCES calibration_sessions(id),
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    PRIMARY KEY (session_id, call_id)
)""",
            """CREATE TABLE IF NOT EXISTS calibration_scores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES calibration_sessions(id),
    call_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    points REAL NOT NULL,
    created_at REAL NOT NULL
)""",
        ),
        # FTS5 is SQLite's: the index, and a trigger that takes a deleted segment out of it.
        sqlite=(
            """CREATE VIRTUAL TABLE IF NOT EXISTS transcript_index USING fts5(
    body, call_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
)""",
            """CREATE TRIGGER IF NOT EXISTS segments_unindex AFTER DELETE ON segments
BEGIN DELETE FROM transcript_index WHERE rowid = old.id; END""",
            *_WORKSPACE_APPEND_ONLY_SQLITE,
        ),
        postgresql=_WORKSPACE_APPEND_ONLY_PG,
    ),
    Step(
        6,
        "the transcript search index on PostgreSQL (qa.web.search); the order of a "
        "calibration session's calls",
        sql=(
            # The order a supervisor listed the calls in (SQLite read it from rowid, which
            # PostgreSQL has not).
            "ALTER TABLE calibration_calls ADD COLUMN position INTEGER NOT NULL DEFAULT 0",
        ),
        sqlite=("UPDATE calibration_calls SET position = rowid",),
        # PostgreSQL has no tokenizer for Chinese: `qa.web.search` writes each segment's
        # terms (Han runs as character pairs, as in SQLite's FTS5 index) as a tsvector with
        # positions, searched by phrase through a GIN index. A trigger queues every new
        # segment, whichever node stores it and whenever its transaction commits, so the
        # index misses none (ids from a sequence commit out of order across nodes); a
        # deleted segment leaves both tables by its foreign keys.
        postgresql=(
            """CREATE TABLE IF NOT EXISTS transcript_index (
    segment_id BIGINT PRIMARY KEY REFERENCES segments(id) ON DELETE CASCADE,
    call_id TEXT NOT NULL,
    body TSVECTOR NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS transcript_index_body ON transcript_index"
            " USING gin (body)",
            """CREATE TABLE IF NOT EXISTS transcript_pending (
    segment_id BIGINT PRIMARY KEY REFERENCES segments(id) ON DELETE CASCADE
)""",
            """CREATE OR REPLACE FUNCTION qa_segment_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transcript_pending (segment_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$""",
            "CREATE OR REPLACE TRIGGER segments_pending AFTER INSERT ON segments"
            " FOR EACH ROW EXECUTE FUNCTION qa_segment_pending()",
            "INSERT INTO transcript_pending (segment_id) SELECT id FROM segments"
            " ON CONFLICT DO NOTHING",
        ),
    ),
    Step(
        7,
        "the review workspace: calibration sessions are closed (blind until then); an "
        "admin's password reset forces a change at the next login",
        sql=(
            "ALTER TABLE calibration_sessions ADD COLUMN closed_at REAL",
            "ALTER TABLE calibration_sessions ADD COLUMN closed_by TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE users ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)

#: Version of the schema this program reads and writes.
SCHEMA_VERSION = MIGRATIONS[-1].version if MIGRATIONS else BASE.version

#: Tables `qa db copy` carries, parents first: table -> (key columns, append-only, the
#: generated integer id or ''). Append-only rows are copied once and must match after that;
#: the others take the source's values.
COPY_TABLES: dict[str, tuple[tuple[str, ...], bool, str]] = {
    "calls": (("call_id",), False, ""),
    "segments": (("id",), True, "id"),
    "events": (("id",), True, "id"),
    "scorecards": (("call_id",), False, ""),
    "score_items": (("call_id", "position"), False, ""),
    "overrides": (("id",), True, "id"),
    "labels": (("id",), True, "id"),
    "recordings": (("call_id",), False, ""),
    "users": (("username",), False, ""),
    "audit": (("id",), True, "id"),
    "disputes": (("id",), True, "id"),
    "dispute_decisions": (("id",), True, "id"),
    "calibration_sessions": (("id",), False, "id"),
    "calibration_calls": (("session_id", "call_id"), False, ""),
    "calibration_scores": (("id",), True, "id"),
}

#: Tables a qa call store has; a database without them is someone else's.
_STORE_TABLES = frozenset(
    {"schema_version", "calls", "segments", "events", "scorecards", "score_items", "overrides"}
)


def _check_steps() -> None:
    versions = [BASE.version] + [s.version for s in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise AssertionError(f"qa.store.MIGRATIONS must number versions 2, 3, ...: {versions}")


_check_steps()


def upgrade(db: Backend) -> int:
    """Creates the schema or upgrades it to `SCHEMA_VERSION`, inside the caller's write
    transaction (a failed step leaves the database as it was).

    Returns:
        The version found (0 for a new database).

    Raises:
        StoreError: The database has a newer schema than this program reads.
    """
    db.lock_schema()
    found = 0
    if "schema_version" in db.tables():
        found = db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
    if found > SCHEMA_VERSION:
        raise StoreError(f"schema version {found}, this program reads {SCHEMA_VERSION}")
    if found == 0:
        for statement in BASE.statements(db.dialect):
            db.execute(statement)
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
    for step in MIGRATIONS:
        if step.version > max(found, 1):
            for statement in step.statements(db.dialect):
                db.execute(statement)
    if max(found, 1) < SCHEMA_VERSION:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    return found


def check_schema(db: Backend) -> None:
    """Refuses a database that is not a qa call store of this program's schema version.

    Raises:
        StoreError: Tables missing, or another schema version.
    """
    missing = _STORE_TABLES - db.tables()
    if missing:
        kind = "PostgreSQL" if db.dialect == "postgresql" else "SQLite"
        raise StoreError(f"not a qa call store (an {kind} database without the tables "
                         f"{', '.join(sorted(missing))})")
    version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise StoreError(f"schema version {version}, this program reads {SCHEMA_VERSION}")


def data_dir() -> Path:
    """This node's data folder: `${XDG_DATA_HOME:-~/.local/share}/qa` (the default store,
    the spool of a PostgreSQL store, recordings beside a store that is not a file)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(data).expanduser() / "qa"


def default_db_path() -> Path | str:
    """`$QA_DB` (a path or a `postgresql://` URL), else
    `${XDG_DATA_HOME:-~/.local/share}/qa/calls.db`."""
    if os.environ.get("QA_DB"):
        return parse_location(os.environ["QA_DB"])
    return data_dir() / "calls.db"


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How the call store opens its database.

    Attributes:
        path: The SQLite file (created owner-only with its folder if missing), or a
            `postgresql://user:password@host:port/database` URL (a string).
        redact: Replace personal data in transcripts, evidence, messages and override reasons
            before they are stored (on by default; see `qa.redact`).
        wal: SQLite: use write-ahead logging (readers never block the live writer). Off only
            for file systems without shared memory (some network mounts).
        busy_timeout: Seconds a write keeps retrying (waiting for another process's lock,
            or after a full disk, an I/O error or a lost server, with backoff) before it is
            spooled.
        read_only: Open an existing store for reading only (`qa review list/show/export`):
            nothing is created or changed (SQLite: no chmod, no WAL switch; PostgreSQL: every
            transaction read-only), and a database that is not a qa call store is refused.
        spool: Where writes wait while the database fails; None: `<path>.spool` beside an
            SQLite file, `${XDG_DATA_HOME:-~/.local/share}/qa/spool/postgresql-<hash>.spool`
            for a server (one per database, local to this machine).
    """

    path: Path | str = field(default_factory=default_db_path)
    redact: bool = True
    wal: bool = True
    busy_timeout: float = 5.0
    read_only: bool = False
    spool: Path | None = None

    @property
    def is_postgresql(self) -> bool:
        """Whether `path` is a PostgreSQL URL."""
        return is_url(self.path)

    @property
    def where(self) -> str:
        """The location for messages: the path, or the URL without its password."""
        return mask_url(str(self.path))

    @property
    def spool_path(self) -> Path:
        """Where writes wait while the database fails (see `spool`)."""
        if self.spool is not None:
            return Path(self.spool)
        if self.is_postgresql:
            digest = hashlib.sha256(self.where.encode()).hexdigest()[:16]
            return data_dir() / "spool" / f"postgresql-{digest}.spool"
        return Path(f"{self.path}.spool")


def open_backend(options: StoreOptions) -> Backend:
    """A connection to the database `options` name, without schema checks or changes.

    Raises:
        DependencyError: A PostgreSQL URL without psycopg installed.
        StoreError: The database cannot be opened.
    """
    if options.is_postgresql:
        from qa.db.postgres import PostgresBackend

        return PostgresBackend(str(options.path), busy_timeout=options.busy_timeout,
                               read_only=options.read_only)
    from qa.db.sqlite import SQLiteBackend

    return SQLiteBackend(Path(options.path), busy_timeout=options.busy_timeout,
                         wal=options.wal, read_only=options.read_only)


def migrate(options: StoreOptions) -> int:
    """Creates or upgrades the schema of the store `options` name, and nothing else (`qa db
    migrate`); an SQLite file must exist already.

    Returns:
        The schema version found (0: the database was empty; `SCHEMA_VERSION`: nothing to do).

    Raises:
        StoreError: No such file, the database cannot be opened, or its schema is newer.
    """
    if not options.is_postgresql and not Path(options.path).exists():
        raise StoreError(f"{options.where}: no call store here")
    db = open_backend(replace(options, read_only=False))
    try:
        db.begin()
        try:
            found = upgrade(db)
            db.commit()
        except BaseException:
            db.rollback()
            raise
    except StoreError as exc:
        raise StoreError(f"{options.where}: {exc}") from None
    except db.errors as exc:
        raise StoreError(f"{options.where}: cannot upgrade the call store: {exc}") from exc
    finally:
        db.close()
    if found < SCHEMA_VERSION:
        log.info("call store %s: schema version %d -> %d", options.where, found, SCHEMA_VERSION)
    return found


@dataclass(frozen=True, slots=True)
class Override:
    """One reviewer's change to one scorecard item; kept forever, never edited.

    Attributes:
        id: Order of entry in the store (later overrides win).
        call_id: The call.
        rule_id: The scorecard item.
        old_points: The item's effective points before this override.
        new_points: The points the reviewer gave.
        reviewer: Who changed it.
        reason: Why (redacted like transcripts).
        created_at: Wall-clock time (epoch seconds) of the change.
    """

    id: int
    call_id: str
    rule_id: str
    old_points: float
    new_points: float
    reviewer: str
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Label:
    """A reviewer's verdict on whether one segment counts for one rule; kept forever.

    Labels turn reviewers' corrections into a rule's examples (`yes`) or counter-examples
    (`no`) when `qa rules tune --db` folds them into a pack.

    Attributes:
        id: Order of entry.
        call_id: The call.
        segment: The segment's number in the call's transcript (1-based, time order).
        rule_id: The rule.
        verdict: `yes` (it counts) or `no` (it must not).
        text: The segment's text as stored (redacted), the example it becomes.
        speaker: Who said it.
        reviewer: Who decided.
        reason: Why.
        created_at: Wall-clock time (epoch seconds).
    """

    id: int
    call_id: str
    segment: int
    rule_id: str
    verdict: str
    text: str
    speaker: str
    reviewer: str
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class CallListing:
    """One line of the call list (`qa review list`); not the pipeline's `qa.types.CallSummary`.

    Attributes:
        call_id, agent_id, source, started_at: As the source reported the call.
        duration: Seconds of audio, None while the call runs.
        category: The call's category from the rules (None when not known).
        end_reason: How the call ended (None while it runs).
        total: Effective score (overrides applied), None before scoring.
        automatic_total: The scorer's own total, None before scoring.
        band: Pay band of `total` ('' before scoring).
        events: Number of rule events.
        overrides: Number of reviewer overrides.
    """

    call_id: str
    agent_id: str
    source: str
    started_at: float
    duration: float | None
    category: str | None
    end_reason: str | None
    total: float | None
    automatic_total: float | None
    band: str
    events: int
    overrides: int


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything stored about one call.

    Attributes:
        info: The call as its source started it.
        duration, category, end_reason: Set when the call ended (None before).
        segments: Final transcript segments in time order.
        events: Rule events in time order.
        scorecard: The scorer's automatic result, unchanged (None before scoring).
        overrides: The audit trail of reviewer changes, oldest first.
        effective: The scorecard with the latest override of each item applied and total
            and band recomputed (equal to `scorecard` without overrides).
    """

    info: CallInfo
    duration: float | None
    category: str | None
    end_reason: str | None
    segments: tuple[Segment, ...]
    events: tuple[Event, ...]
    scorecard: Scorecard | None
    overrides: tuple[Override, ...]
    effective: Scorecard | None


def _effective(card: Scorecard, overrides: tuple[Override, ...]) -> Scorecard:
    latest = {o.rule_id: o.new_points for o in overrides}
    if not latest:
        return card
    items = []
    delta = 0.0
    for item in card.items:
        if item.rule_id in latest:
            delta += latest[item.rule_id] - item.points_awarded
            item = replace(item, points_awarded=latest[item.rule_id])
        items.append(item)
    # Shift the scorer's total rather than re-summing items, so whatever the scorer counted
    # outside its items (bonuses, clamping) is kept.
    total = min(100.0, max(0.0, card.total + delta))
    return replace(card, items=tuple(items), total=total, band=band(total))




def _process_token(pid: int) -> str:
    """What tells this process from a later one that reuses its pid: its start time in clock
    ticks since boot (Linux), '' where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _process_alive(pid: int, token: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not token or _process_token(pid) in ("", token)


def _call_of(record: dict) -> str:
    return record.get("call_id") or record.get("row", {}).get("call_id", "?")


class CallStore:
    """The call store, on SQLite or PostgreSQL. Thread-safe: one connection behind a lock.

    Args:
        options: Where the database is and whether to redact; defaults to `StoreOptions()`.

    Attributes:
        upgraded_from: The schema version found when the store was opened for writing (0 for
            a new database; `SCHEMA_VERSION` when nothing needed upgrading).

    Raises:
        StoreError: The database cannot be created or opened, or is not a qa call store.
        DependencyError: A PostgreSQL URL without psycopg installed.
    """

    def __init__(self, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self._lock = threading.Lock()
        where = self.options.where
        self._db = open_backend(self.options)
        self.upgraded_from = SCHEMA_VERSION
        try:
            if self.options.read_only:
                check_schema(self._db)
            else:
                with self._transaction():
                    self.upgraded_from = upgrade(self._db)
        except StoreError as exc:
            self._db.close()
            raise StoreError(f"{where}: {exc}") from None
        except self._db.errors as exc:
            self._db.close()
            raise StoreError(f"{where}: cannot open the call store: {exc}") from exc
        except BaseException:
            self._db.close()
            raise
        if self.upgraded_from and self.upgraded_from < SCHEMA_VERSION:
            log.info("upgraded call store %s from schema version %d to %d",
                     where, self.upgraded_from, SCHEMA_VERSION)
        self._stopping = threading.Event()
        self.spooled = 0  # writes that went to the spool (read by the metrics)
        self.write_retries = 0  # failed write attempts that were retried
        if self.options.read_only:
            log.debug("opened call store %s read-only", where)
            return
        if self.options.is_postgresql and self.options.spool is None:
            self.options.spool_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._spool = Spool(self.options.spool_path)
        self._next_replay = 0.0
        if len(self._spool):
            with self._lock:
                self._replay(patient=True)
        log.debug("opened call store %s", where)

    @contextmanager
    def _transaction(self) -> Iterator[Backend]:
        self._db.begin()
        try:
            yield self._db
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def _text(self, text: str, language: str | None = None) -> str:
        return redact(text, language or None).text if self.options.redact else text

    def _require_call(self, call_id: str, *, lock: bool = False) -> None:
        """Raises CallNotFoundError unless the call is stored; `lock` (in a write
        transaction) holds other writers of this call off until the transaction ends."""
        row = self._db.execute("SELECT 1 FROM calls WHERE call_id = ?"
                               + (self._db.for_update if lock else ""), (call_id,)).fetchone()
        if row is None:
            raise CallNotFoundError(call_id)

    # -- the write path: records applied with retries, else spooled -------------------------

    def start_call(self, call: CallInfo) -> None:
        """Records a new call, with the process that runs it (for `close_interrupted`).

        Raises:
            StoreError: A call with this id is already stored (ids are never reused, so an
                earlier call is never overwritten or appended to).
        """
        pid = os.getpid()
        self._write({
            "op": "call", "key": str(uuid.uuid4()),
            "row": {
                "call_id": call.call_id, "agent_id": call.agent_id, "source": call.source,
                "started_at": call.started_at,
                "channels": ",".join(str(c) for c in call.channels),
                "sample_rate": call.sample_rate, "owner_pid": pid,
                "owner_host": socket.gethostname(), "owner_token": _process_token(pid),
            },
        })

    def add_segment(self, segment: Segment) -> None:
        """Stores a final segment and commits at once; partial segments are not stored
        (the final one that replaces them is).

        Raises:
            CallNotFoundError: The call was never started.
        """
        if not segment.final:
            return
        text, words = segment.text, segment.words
        if self.options.redact:
            language = segment.language or None
            words = _redact_words(words, text, language)
            text = redact(text, language).text
        words_json = json.dumps(
            [[w.start, w.end, w.text, w.probability] for w in words], ensure_ascii=False
        )
        self._write({
            "op": "segment", "key": str(uuid.uuid4()),
            "row": {
                "call_id": segment.call_id, "speaker": str(segment.speaker),
                "start": segment.start, "end": segment.end, "text": text, "words": words_json,
                "language": segment.language, "avg_logprob": segment.avg_logprob,
                "no_speech_prob": segment.no_speech_prob,
            },
        })

    def add_event(self, event: Event) -> None:
        """Stores a rule event (evidence and message redacted) and commits at once.

        Raises:
            CallNotFoundError: The call was never started.
        """
        self._write({
            "op": "event", "key": str(uuid.uuid4()),
            "row": {
                "call_id": event.call_id, "time": event.time, "kind": str(event.kind),
                "rule_id": event.rule_id, "severity": str(event.severity),
                "points": event.points, "evidence": self._text(event.evidence),
                "message": self._text(event.message), "speaker": str(event.speaker),
                "end": event.end, "match_kind": event.match, "match_score": event.score,
                "match_example": self._text(event.example),
            },
        })

    def end_call(self, call_id: str, *, duration: float, category: str | None, reason: str) -> None:
        """Records the end of a call: its audio length, category and why it ended.

        Raises:
            CallNotFoundError: The call was never started.
        """
        self._write({
            "op": "end", "key": str(uuid.uuid4()), "call_id": call_id, "ended_at": time.time(),
            "duration": duration, "category": category, "reason": reason,
        })

    def save_scorecard(self, scorecard: Scorecard) -> None:
        """Stores the scorer's automatic result, replacing an earlier automatic result of the
        same call (a re-score); reviewer overrides are kept and still apply.

        Raises:
            CallNotFoundError: The call was never started.
        """
        self._write({
            "op": "scorecard", "key": str(uuid.uuid4()), "call_id": scorecard.call_id,
            "total": scorecard.total, "band": scorecard.band, "saved_at": time.time(),
            "items": [
                [item.rule_id, item.description, item.points_possible, item.points_awarded,
                 json.dumps([self._text(e) for e in item.evidence], ensure_ascii=False),
                 json.dumps(list(item.times))]
                for item in scorecard.items
            ],
        })

    def _apply(self, db: Backend, record: dict) -> None:
        """Performs one write record inside an open transaction."""
        op = record["op"]
        if op in ("call", "segment", "event"):
            row = record["row"]
            if not all(_COLUMN.match(name) for name in row):
                raise StoreError(f"bad column name in a {op} record")
            if op != "call":
                self._require_call(row["call_id"])
            table = {"call": "calls", "segment": "segments", "event": "events"}[op]
            columns = ", ".join(f'"{name}"' for name in row)
            try:
                db.execute(
                    f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})",
                    tuple(row.values()),
                )
            except db.errors as exc:
                if op == "call" and db.integrity(exc):
                    raise StoreError(
                        f"call '{row['call_id']}' is already in the store (a call id is never "
                        "reused)"
                    ) from exc
                raise
        elif op == "end":
            cur = db.execute(
                "UPDATE calls SET ended_at = ?, duration = ?, category = ?, end_reason = ?"
                " WHERE call_id = ?",
                (record["ended_at"], record["duration"], record["category"], record["reason"],
                 record["call_id"]),
            )
            if cur.rowcount == 0:
                raise CallNotFoundError(record["call_id"])
        elif op == "scorecard":
            call_id = record["call_id"]
            self._require_call(call_id)
            db.execute("DELETE FROM score_items WHERE call_id = ?", (call_id,))
            db.execute(
                "INSERT INTO scorecards (call_id, total, band, saved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (call_id) DO UPDATE SET total = excluded.total,"
                " band = excluded.band, saved_at = excluded.saved_at",
                (call_id, record["total"], record["band"], record["saved_at"]),
            )
            db.executemany(
                "INSERT INTO score_items (call_id, position, rule_id, description,"
                " points_possible, points_awarded, evidence, times)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(call_id, i, *item) for i, item in enumerate(record["items"])],
            )
        else:
            raise StoreError(f"unknown write record {op!r}")

    def _write(self, record: dict) -> None:
        with self._lock:
            if len(self._spool):
                # Later writes queue behind spooled ones, so the store sees them in order.
                self._replay(patient=False)
                if len(self._spool):
                    self._spool_record(record)
                    return
            try:
                self._retrying(lambda db: self._apply(db, record))
            except self._db.errors as exc:
                if not self._db.transient(exc):  # a fault in the record, not in the database
                    raise StoreError(f"{self.options.where}: {record['op']} write refused: "
                                     f"{exc}") from exc
                log.warning("call store %s failing (%s): spooling writes to %s until it is back",
                            self.options.where, str(exc).strip(), self._spool.path)
                self._spool_record(record)

    def _spool_record(self, record: dict) -> None:
        self._spool.append(record)
        self.spooled += 1

    def _retrying(self, work: Callable[[Backend], object]) -> object:
        """Runs `work` in one transaction, retrying transient failures with backoff for
        `busy_timeout` seconds (less once `interrupt` was called); raises the last error."""
        deadline = time.monotonic() + self.options.busy_timeout
        delay = 0.05
        while True:
            wait = max(0.001, min(_ATTEMPT_WAIT_S, deadline - time.monotonic()))
            self._db.set_wait(wait)
            try:
                with self._transaction() as db:
                    return work(db)
            except self._db.errors as exc:
                if not self._db.transient(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise
                self.write_retries += 1
                log.debug("store write failed (%s); retrying", exc)
                if self._stopping.wait(min(delay, left)):
                    raise
                delay = min(delay * 2, 1.0)
            finally:
                with suppress(*self._db.errors):
                    self._db.set_wait(self.options.busy_timeout)

    def _replay(self, *, patient: bool) -> None:
        """Writes the spooled records in order (store lock held); each one once, keyed.
        Impatient replays (from a write) try at most once a second, without retrying."""
        now = time.monotonic()
        if not patient and now < self._next_replay:
            return
        self._next_replay = now + _REPLAY_INTERVAL_S
        records = self._spool.records()

        def replay_one(db: Backend, record: dict) -> None:
            cur = db.execute("INSERT INTO spool_applied (key) VALUES (?)"
                             " ON CONFLICT (key) DO NOTHING", (record["key"],))
            if cur.rowcount == 0:
                return  # written by a replay that was cut short
            self._apply(db, record)

        for record in records:
            try:
                if patient:
                    self._retrying(functools.partial(replay_one, record=record))
                else:
                    self._db.set_wait(_ATTEMPT_WAIT_S)
                    try:
                        with self._transaction() as db:
                            replay_one(db, record)
                    finally:
                        with suppress(*self._db.errors):
                            self._db.set_wait(self.options.busy_timeout)
            except self._db.errors as exc:
                if self._db.transient(exc):
                    log.debug("store still failing (%s); %d writes wait in the spool",
                              exc, len(self._spool))
                    return
                log.error("spooled %s write for call %s cannot be stored and is dropped: %s",
                          record.get("op"), _call_of(record), exc)
            except (StoreError, CallNotFoundError) as exc:
                log.error("spooled %s write cannot be stored and is dropped: %s",
                          record.get("op"), exc)
        self._spool.clear()
        # The keys are only needed until the spool is empty; other processes' keys (a shared
        # server) stay until their own replay ends.
        keys = [r["key"] for r in records if isinstance(r.get("key"), str)]
        with suppress(*self._db.errors), self._transaction() as db:
            for i in range(0, len(keys), _KEYS_PER_DELETE):
                chunk = keys[i:i + _KEYS_PER_DELETE]
                marks = ", ".join("?" * len(chunk))
                db.execute(f"DELETE FROM spool_applied WHERE key IN ({marks})", chunk)
        log.info("call store %s is back: %d spooled writes replayed", self.options.where,
                 len(records))

    def interrupt(self) -> None:
        """Stops waiting: from now on a failing write is spooled after one short attempt, so
        a stopping process is never held up by the store."""
        self._stopping.set()

    # -- calls left open by a process that died ----------------------------------------------

    def close_interrupted(
        self, rescore: Callable[[CallRecord], Scorecard | None] | None = None
    ) -> list[str]:
        """Closes the calls that a process on this host started and never ended because it
        died (killed, crashed): end reason `interrupted`, duration up to the last stored
        segment or event, and a scorecard from `rescore` (None: no scorecard).

        Args:
            rescore: Computes a scorecard from what was stored (`qa.rules.scoring.score` over
                the stored events), or returns None.

        Returns:
            The ids of the calls closed.
        """
        host = socket.gethostname()
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, owner_pid, owner_token FROM calls"
                " WHERE ended_at IS NULL AND owner_pid IS NOT NULL AND owner_host = ?",
                (host,),
            ).fetchall()
        closed = []
        for call_id, pid, token in rows:
            if _process_alive(pid, token or ""):
                continue
            record = self.call(call_id)
            duration = max([s.end for s in record.segments]
                           + [e.end or e.time for e in record.events] + [0.0])
            card = rescore(record) if rescore is not None else None
            with self._lock, self._transaction() as db:
                db.execute(
                    "UPDATE calls SET ended_at = ?, duration = ?, end_reason = ?"
                    " WHERE call_id = ? AND ended_at IS NULL",
                    (time.time(), duration, INTERRUPTED, call_id),
                )
            if card is not None:
                self.save_scorecard(card)
            log.warning("call %s was left open by process %d, which is gone: closed as %s "
                        "(%.1f s, %s)", call_id, pid, INTERRUPTED, duration,
                        f"score {card.total:g}" if card else "no scorecard")
            closed.append(call_id)
        return closed

    def add_override(
        self, call_id: str, rule_id: str, *, points: float, reviewer: str, reason: str
    ) -> Override:
        """Appends a reviewer's new points for one scorecard item to the audit trail.

        Args:
            call_id: The call.
            rule_id: The scorecard item.
            points: The new points, from 0 to the item's possible points.
            reviewer: Who makes the change (required).
            reason: Why (required; redacted like transcripts).

        Returns:
            The stored override, with the item's previous effective points.

        Raises:
            CallNotFoundError: No such call.
            StoreError: The call has no scorecard or no such item, the points are out of
                range, or reviewer or reason is empty.
        """
        if not reviewer.strip() or not reason.strip():
            raise StoreError("an override needs a reviewer and a reason")
        with self._lock, self._transaction() as db:
            # Locked, so two reviewers on two nodes each see the other's points as "old".
            self._require_call(call_id, lock=True)
            item = db.execute(
                "SELECT points_possible, points_awarded FROM score_items"
                " WHERE call_id = ? AND rule_id = ?",
                (call_id, rule_id),
            ).fetchone()
            if item is None:
                raise StoreError(f"call '{call_id}' has no scorecard item '{rule_id}'")
            possible, old = item
            if not 0.0 <= points <= possible:
                raise StoreError(
                    f"points for '{rule_id}' must be between 0 and {possible:g}, got {points:g}"
                )
            last = db.execute(
                "SELECT new_points FROM overrides WHERE call_id = ? AND rule_id = ?"
                " ORDER BY id DESC LIMIT 1",
                (call_id, rule_id),
            ).fetchone()
            if last is not None:
                old = last[0]
            row = (call_id, rule_id, old, float(points), reviewer.strip(), self._text(reason),
                   time.time())  # fmt: skip
            cur = db.execute(
                "INSERT INTO overrides (call_id, rule_id, old_points, new_points, reviewer,"
                " reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                row,
            )
            return Override(cur.fetchone()[0], *row)

    def add_label(
        self, call_id: str, segment: int | str, rule_id: str, verdict: str, *, reviewer: str,
        reason: str,
    ) -> Label:
        """Records a reviewer's verdict that a segment does (`yes`) or does not (`no`) count
        for a rule; appended to an audit trail that nothing edits.

        Args:
            call_id: The call.
            segment: The segment's number in `qa review show` (1-based, time order), or the
                exact text of one of the call's segments.
            rule_id: The rule.
            verdict: `yes` or `no`.
            reviewer: Who decides (required).
            reason: Why (required; redacted like transcripts).

        Raises:
            CallNotFoundError: No such call.
            StoreError: No such segment, a bad verdict, or no reviewer or reason.
        """
        if verdict not in ("yes", "no"):
            raise StoreError(f"a label is 'yes' or 'no', not '{verdict}'")
        if not reviewer.strip() or not reason.strip():
            raise StoreError("a label needs a reviewer and a reason")
        with self._lock, self._transaction() as db:
            self._require_call(call_id, lock=True)
            rows = db.execute(
                "SELECT speaker, text FROM segments WHERE call_id = ? ORDER BY start, id",
                (call_id,),
            ).fetchall()
            if isinstance(segment, int) or str(segment).isdigit():
                number = int(segment)
                if not 1 <= number <= len(rows):
                    raise StoreError(
                        f"call '{call_id}' has segments 1 to {len(rows)}, not {number}"
                    )
            else:
                texts = [r[1].strip() for r in rows]
                if str(segment).strip() not in texts:
                    raise StoreError(f"call '{call_id}' has no segment '{segment}'")
                number = texts.index(str(segment).strip()) + 1
            speaker, text = rows[number - 1]
            row = (call_id, number, rule_id, verdict, text.strip(), speaker, reviewer.strip(),
                   self._text(reason), time.time())  # fmt: skip
            cur = db.execute(
                "INSERT INTO labels (call_id, segment_id, rule_id, verdict, text, speaker,"
                " reviewer, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                row,
            )
            return Label(cur.fetchone()[0], *row)

    def labels(self, rule_id: str | None = None) -> list[Label]:
        """Reviewers' labels, oldest first (of one rule, or all)."""
        query = (
            "SELECT id, call_id, segment_id, rule_id, verdict, text, speaker, reviewer, reason,"
            " created_at FROM labels"
        )
        with self._lock:
            if rule_id is None:
                rows = self._db.execute(query + " ORDER BY id").fetchall()
            else:
                rows = self._db.execute(query + " WHERE rule_id = ? ORDER BY id",
                                        (rule_id,)).fetchall()
        return [Label(*r) for r in rows]

    # -- recordings and retention (schema version 4; qa.recordings) -------------------------

    def add_recording(self, recording: _types.Recording) -> None:
        """Records where a call's audio file is (replacing an earlier row of the call).

        Raises:
            CallNotFoundError: No such call.
            StoreError: The database refused the write (after retrying a busy or failing one).
        """
        spans = json.dumps([[str(s.channel), s.start, s.end, s.kind]
                            for s in recording.masked_spans])

        def work(db: Backend) -> None:
            self._require_call(recording.call_id)
            db.execute("DELETE FROM recordings WHERE call_id = ?", (recording.call_id,))
            db.execute(
                "INSERT INTO recordings (call_id, path, codec, sample_rate, channels,"
                " duration_s, bytes, masked_spans, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (recording.call_id, recording.path, recording.codec, recording.sample_rate,
                 recording.channels, recording.duration, recording.bytes, spans,
                 recording.created_at),
            )

        with self._lock:
            try:
                self._retrying(work)
            except self._db.errors as exc:
                raise StoreError(f"{self.options.where}: recording of call "
                                 f"'{recording.call_id}' not stored: {exc}") from exc

    def recording(self, call_id: str) -> _types.Recording | None:
        """The call's recording, or None when its audio was not kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT call_id, path, codec, sample_rate, channels, duration_s, bytes,"
                " masked_spans, created_at FROM recordings WHERE call_id = ?",
                (call_id,),
            ).fetchone()
        if row is None:
            return None
        spans = tuple(_types.MaskedSpan(Speaker(c), a, b, k) for c, a, b, k in json.loads(row[7]))
        return _types.Recording(call_id=row[0], path=row[1], codec=row[2], sample_rate=row[3],
                                channels=row[4], duration=row[5], bytes=row[6],
                                masked_spans=spans, created_at=row[8])

    def expired_calls(self, before: float) -> list[str]:
        """Ended calls that started before `before` (epoch seconds) and were not purged
        yet, oldest first: what a retention sweep deletes."""
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id FROM calls WHERE started_at < ? AND ended_at IS NOT NULL"
                " AND purged_at IS NULL ORDER BY started_at, call_id",
                (before,),
            ).fetchall()
        return [r[0] for r in rows]

    def delete_call(self, call_id: str) -> bool:
        """Deletes a call's data: its recording row, segments, events and scorecard, then
        the call itself. The audit trails (overrides, labels, and whatever else refers to
        the call) are append-only and are kept: a call they refer to stays as a bare row
        (who, when, how long) marked purged, with nothing said on it left. The audio file
        is the caller's to delete (`qa.recordings.prune`).

        Returns:
            True when the call row went too; False when an audit trail keeps it (purged).

        Raises:
            CallNotFoundError: No such call.
            StoreError: The database refused the delete.
        """

        def work(db: Backend) -> bool:
            self._require_call(call_id)
            for table in ("recordings", "segments", "events", "score_items", "scorecards"):
                db.execute(f"DELETE FROM {table} WHERE call_id = ?", (call_id,))
            # A foreign key from an audit table refuses the delete: keep the row then.
            db.execute("SAVEPOINT drop_call")
            try:
                db.execute("DELETE FROM calls WHERE call_id = ?", (call_id,))
                return True
            except db.errors as exc:
                if not db.integrity(exc):
                    raise
                db.execute("ROLLBACK TO SAVEPOINT drop_call")
                db.execute("UPDATE calls SET purged_at = ? WHERE call_id = ?",
                           (time.time(), call_id))
                return False
            finally:
                db.execute("RELEASE SAVEPOINT drop_call")

        with self._lock:
            try:
                return bool(self._retrying(work))
            except self._db.errors as exc:
                raise StoreError(f"{self.options.where}: call '{call_id}' not deleted: "
                                 f"{exc}") from exc

    def calls(self, *, limit: int | None = 100) -> list[CallListing]:
        """The most recently started calls, newest first, with their effective scores.

        Args:
            limit: The most calls to return; None for all.
        """
        query = (
            "SELECT call_id, agent_id, source, started_at, duration, category, end_reason,"
            " (SELECT count(*) FROM events e WHERE e.call_id = c.call_id),"
            " (SELECT count(*) FROM overrides o WHERE o.call_id = c.call_id)"
            " FROM calls c ORDER BY started_at DESC, call_id"
        )
        with self._lock:
            if limit is None:
                rows = self._db.execute(query).fetchall()
            else:
                rows = self._db.execute(query + " LIMIT ?", (limit,)).fetchall()
            cards = {r[0]: self._scores(r[0]) for r in rows}
        out = []
        for row in rows:
            card, effective = cards[row[0]]
            out.append(
                CallListing(
                    call_id=row[0], agent_id=row[1], source=row[2], started_at=row[3],
                    duration=row[4], category=row[5], end_reason=row[6],
                    total=effective.total if effective else None,
                    automatic_total=card.total if card else None,
                    band=effective.band if effective else "",
                    events=row[7],
                    overrides=row[8],
                )
            )
        return out

    def call(self, call_id: str) -> CallRecord:
        """Everything stored about one call.

        Raises:
            CallNotFoundError: No such call.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT agent_id, source, started_at, channels, sample_rate, duration,"
                " category, end_reason FROM calls WHERE call_id = ?",
                (call_id,),
            ).fetchone()
            if row is None:
                raise CallNotFoundError(call_id)
            segments = self._db.execute(
                'SELECT speaker, start, "end", text, words, language, avg_logprob,'
                " no_speech_prob FROM segments WHERE call_id = ? ORDER BY start, id",
                (call_id,),
            ).fetchall()
            events = self._db.execute(
                "SELECT time, kind, rule_id, severity, points, evidence, message, speaker,"
                ' "end", match_kind, match_score, match_example FROM events'
                " WHERE call_id = ? ORDER BY time, id",
                (call_id,),
            ).fetchall()
            overrides = self._overrides(call_id)
            card, effective = self._scores(call_id, overrides)
        channels = tuple(Speaker(c) for c in row[3].split(",") if c)
        return CallRecord(
            info=CallInfo(call_id, row[0], row[1], row[2], channels, row[4]),
            duration=row[5],
            category=row[6],
            end_reason=row[7],
            segments=tuple(
                Segment(
                    call_id,
                    Speaker(s[0]),
                    s[1],
                    s[2],
                    s[3],
                    tuple(Word(*w) for w in json.loads(s[4])),
                    True,
                    s[5],
                    s[6],
                    s[7],
                )
                for s in segments
            ),
            events=tuple(
                Event(
                    call_id,
                    e[0],
                    EventKind(e[1]),
                    e[2],
                    Severity(e[3]),
                    e[4],
                    e[5],
                    e[6],
                    Speaker(e[7]),
                    e[8],
                    e[9],
                    e[10],
                    e[11],
                )
                for e in events
            ),
            scorecard=card,
            overrides=overrides,
            effective=effective,
        )

    def _overrides(self, call_id: str) -> tuple[Override, ...]:
        rows = self._db.execute(
            "SELECT id, call_id, rule_id, old_points, new_points, reviewer, reason, created_at"
            " FROM overrides WHERE call_id = ? ORDER BY id",
            (call_id,),
        ).fetchall()
        return tuple(Override(*r) for r in rows)

    def _scores(
        self, call_id: str, overrides: tuple[Override, ...] | None = None
    ) -> tuple[Scorecard | None, Scorecard | None]:
        head = self._db.execute(
            "SELECT total, band FROM scorecards WHERE call_id = ?", (call_id,)
        ).fetchone()
        if head is None:
            return None, None
        items = self._db.execute(
            "SELECT rule_id, description, points_possible, points_awarded, evidence, times"
            " FROM score_items WHERE call_id = ? ORDER BY position",
            (call_id,),
        ).fetchall()
        card = Scorecard(
            call_id,
            tuple(
                ScoreItem(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), tuple(json.loads(r[5])))
                for r in items
            ),
            head[0],
            head[1],
        )
        if overrides is None:
            overrides = self._overrides(call_id)
        return card, _effective(card, overrides)

    def close(self) -> None:
        """Replays what the spool holds if the database takes it now, then closes the
        database; the store cannot be used afterwards. What is still spooled is replayed
        when the store is next opened."""
        with self._lock:
            if not self.options.read_only and len(self._spool):
                self._next_replay = 0.0  # a last try, whenever the one before was
                with suppress(*self._db.errors):
                    self._replay(patient=not self._stopping.is_set())
                if len(self._spool):
                    log.warning("%d writes remain in %s; they are stored when the call store "
                                "is next opened", len(self._spool), self._spool.path)
            self._db.close()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


