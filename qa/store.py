"""The call store: calls, segments, events, scorecards and reviewer overrides in SQLite.

Every write is its own committed transaction, so a process killed mid-call loses at most
what it had not yet handed to the store (the utterance in flight). WAL mode with
`synchronous=NORMAL` is durable against a killed process (not against power loss, which
would cost the last commits only, never the file's integrity), and lets review commands read
while a live pipeline writes. The database file and its `-wal`/`-shm` companions are created
owner-only (SQLite gives the companions the main file's mode).

Writes that fail for a passing reason (another process holds the lock, the disk is full, an
I/O error) are retried with backoff for `StoreOptions.busy_timeout` seconds, then spooled to
`<database>.spool` (`qa.spool`) and replayed in order once the database takes writes again,
so a failing store never stops the live pipeline and loses nothing. Each call records the
process that started it, so a later run can close the calls of a process that was killed
(`close_interrupted`).

Personal data is redacted (`qa.redact`) before it reaches the disk unless the options say
otherwise. Overrides are an append-only audit trail (triggers refuse to change them); the
automatic scorecard is kept as the scorer wrote it and the effective one is computed on read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa import types as _types
from qa.errors import CallNotFoundError, StoreError
from qa.redact import redact
from qa.redact import redact_words as _redact_words
from qa.rules.scoring import band
from qa.sources.base import CallInfo
from qa.spool import Spool
from qa.types import Event, EventKind, Scorecard, ScoreItem, Segment, Severity, Speaker, Word

__all__ = [
    "CallRecord",
    "CallStore",
    "CallSummary",
    "Label",
    "Override",
    "StoreOptions",
    "default_db_path",
]

log = logging.getLogger("qa.store")

#: Version of the schema; `_SCHEMA` is version 1 and `_migrate` upgrades it step by step.
SCHEMA_VERSION = 5
#: SQLite errors worth retrying, by primary result code: BUSY, LOCKED, NOMEM, READONLY,
#: IOERR, FULL, CANTOPEN, PROTOCOL (another process's lock, a full disk, a failing device).
_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
#: Seconds one write attempt waits for a lock; the retry loop adds backoff between attempts,
#: so a stop request is noticed within about this long.
_ATTEMPT_WAIT_S = 0.25
#: Seconds between attempts to replay the spool while the store keeps failing.
_REPLAY_INTERVAL_S = 1.0
#: Column names the spool may carry (it is replayed into SQL).
_COLUMN = re.compile(r"^[a-z_]+$")
#: end_reason of a call whose process died before it ended.
INTERRUPTED = "interrupted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
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
);
CREATE TABLE IF NOT EXISTS segments (
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
);
CREATE INDEX IF NOT EXISTS segments_call ON segments(call_id, start);
CREATE TABLE IF NOT EXISTS events (
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
);
CREATE INDEX IF NOT EXISTS events_call ON events(call_id, time);
CREATE TABLE IF NOT EXISTS scorecards (
    call_id TEXT PRIMARY KEY REFERENCES calls(call_id),
    total REAL NOT NULL,
    band TEXT NOT NULL,
    saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS score_items (
    call_id TEXT NOT NULL REFERENCES scorecards(call_id),
    position INTEGER NOT NULL,
    rule_id TEXT NOT NULL,
    description TEXT NOT NULL,
    points_possible REAL NOT NULL,
    points_awarded REAL NOT NULL,
    evidence TEXT NOT NULL,
    times TEXT NOT NULL,
    PRIMARY KEY (call_id, position)
);
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    rule_id TEXT NOT NULL,
    old_points REAL NOT NULL,
    new_points REAL NOT NULL,
    reviewer TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS overrides_call ON overrides(call_id, id);
CREATE TRIGGER IF NOT EXISTS overrides_no_update BEFORE UPDATE ON overrides
BEGIN SELECT RAISE(ABORT, 'overrides are an append-only audit trail'); END;
CREATE TRIGGER IF NOT EXISTS overrides_no_delete BEFORE DELETE ON overrides
BEGIN SELECT RAISE(ABORT, 'overrides are an append-only audit trail'); END;
"""


def default_db_path() -> Path:
    """`$QA_DB`, else `${XDG_DATA_HOME:-~/.local/share}/qa/calls.db`."""
    if os.environ.get("QA_DB"):
        return Path(os.environ["QA_DB"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(data).expanduser() / "qa" / "calls.db"


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How the call store opens its database.

    Attributes:
        path: The SQLite file; created owner-only with its folder if missing.
        redact: Replace personal data in transcripts, evidence, messages and override reasons
            before they are stored (on by default; see `qa.redact`).
        wal: Use write-ahead logging (readers never block the live writer). Off only for
            file systems without shared memory (some network mounts).
        busy_timeout: Seconds a write keeps retrying (waiting for another process's lock,
            or after a full disk or I/O error, with backoff) before it is spooled.
        read_only: Open an existing store for reading only (`qa review list/show/export`):
            the file is never created, chmod-ed, switched to WAL or given tables, and a file
            that is not a qa call store is refused.
    """

    path: Path = field(default_factory=default_db_path)
    redact: bool = True
    wal: bool = True
    busy_timeout: float = 5.0
    read_only: bool = False

    @property
    def spool_path(self) -> Path:
        """Where writes wait while the database fails: `<path>.spool`."""
        return Path(f"{self.path}.spool")


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
class CallSummary:
    """One line of the call list.

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


#: Columns that record how a rule event matched its evidence (issue: rules by meaning); added
#: in place to stores written before they existed. Idempotent, so it needs no version step.
_MATCH_COLUMNS = (
    ("match_kind", "TEXT NOT NULL DEFAULT ''"),
    ("match_score", "REAL"),
    ("match_example", "TEXT NOT NULL DEFAULT ''"),
)
_LABELS_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
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
);
CREATE INDEX IF NOT EXISTS labels_rule ON labels(rule_id, id);
CREATE TRIGGER IF NOT EXISTS labels_no_update BEFORE UPDATE ON labels
BEGIN SELECT RAISE(ABORT, 'labels are an append-only audit trail'); END;
CREATE TRIGGER IF NOT EXISTS labels_no_delete BEFORE DELETE ON labels
BEGIN SELECT RAISE(ABORT, 'labels are an append-only audit trail'); END;
"""

#: One row per call whose audio is kept (schema version 4; see `qa.recordings`). The file
#: lives outside the database; `masked_spans` is JSON: [[channel, start, end, kind], ...].
_RECORDINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    call_id TEXT PRIMARY KEY REFERENCES calls(call_id),
    path TEXT NOT NULL,
    codec TEXT NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    bytes INTEGER NOT NULL,
    masked_spans TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


#: The review workspace (schema version 5; `qa.web`): users, sessions, the audit log,
#: disputes and calibration. Audit, disputes, dispute decisions and calibration scores are
#: append-only like overrides. `transcript_index` (FTS5, SQLite only) is filled by
#: `qa.web.search` from `segments`; a deleted segment leaves it by the trigger.
_WORKSPACE_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('agent', 'reviewer', 'supervisor', 'admin')),
    agent_id TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    username TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_call ON audit(call_id, id);
CREATE TABLE IF NOT EXISTS disputes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    rule_id TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    opened_at REAL NOT NULL,
    deadline REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS disputes_call ON disputes(call_id, id);
CREATE TABLE IF NOT EXISTS dispute_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id INTEGER NOT NULL REFERENCES disputes(id),
    state TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    decided_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calibration_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calibration_calls (
    session_id INTEGER NOT NULL REFERENCES calibration_sessions(id),
    call_id TEXT NOT NULL REFERENCES calls(call_id),
    PRIMARY KEY (session_id, call_id)
);
CREATE TABLE IF NOT EXISTS calibration_scores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES calibration_sessions(id),
    call_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    points REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS transcript_index USING fts5(
    body, call_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS segments_unindex AFTER DELETE ON segments
BEGIN DELETE FROM transcript_index WHERE rowid = old.id; END;
"""
_APPEND_ONLY = ("audit", "disputes", "dispute_decisions", "calibration_scores")


def _create_private(path: Path) -> None:
    """Creates the database file owner-only before SQLite opens it, or tightens an old one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # Never chmod a device or a FIFO (`--db /dev/zero` as root made it 0600).
            raise StoreError(f"{path}: not a regular file, cannot hold a call store")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            log.warning("tightening permissions of %s from %o to 600", path, mode)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


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


def _migrate(db: sqlite3.Connection, from_version: int) -> None:
    """Upgrades a database in place from `from_version` to `SCHEMA_VERSION`, one step per
    version, inside the caller's transaction (a failed step leaves the file as it was)."""
    if from_version < 2:
        # Who started each call, so a later run can tell a call left open by a dead process.
        db.execute("ALTER TABLE calls ADD COLUMN owner_pid INTEGER")
        db.execute("ALTER TABLE calls ADD COLUMN owner_host TEXT")
        db.execute("ALTER TABLE calls ADD COLUMN owner_token TEXT")
        # Keys of spooled writes already replayed, so a cut-short replay never writes twice.
        db.execute("CREATE TABLE IF NOT EXISTS spool_applied (key TEXT PRIMARY KEY)")
    if from_version < 3:
        # How each rule event matched its evidence (exact, fuzzy, pinyin, intent), and
        # reviewers' labels that become rules' examples.
        for name, decl in _MATCH_COLUMNS:
            db.execute(f"ALTER TABLE events ADD COLUMN {name} {decl}")
        for statement in _LABELS_SCHEMA.split(";\n"):
            if statement.strip():
                db.execute(statement)
    if from_version < 4:
        # Each call's audio file (qa.recordings), and when retention purged a call that an
        # audit trail (overrides, labels) still refers to, so it is kept as a bare row.
        db.execute(_RECORDINGS_SCHEMA)
        db.execute("ALTER TABLE calls ADD COLUMN purged_at REAL")
    if from_version < 5:
        # The review workspace (qa.web): who may read what, and a trail of who did.
        for statement in _WORKSPACE_SCHEMA.split(";\n"):
            if statement.strip():
                db.execute(statement)
        for table in _APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                db.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb}"
                           f" ON {table} BEGIN SELECT RAISE(ABORT, '{table} is an append-only"
                           " audit trail'); END")
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


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


def _transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # older Pythons: fall back on the message
        return any(w in str(exc) for w in ("locked", "busy", "disk", "I/O", "full"))
    return code & 0xFF in _TRANSIENT


class CallStore:
    """The SQLite call store. Thread-safe: one connection behind a lock.

    Args:
        options: Where the database is and whether to redact; defaults to `StoreOptions()`.

    Raises:
        StoreError: The database cannot be created or opened.
    """

    def __init__(self, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self._lock = threading.Lock()
        path = Path(self.options.path)
        if self.options.read_only:
            self._db = _open_read_only(path, self.options.busy_timeout)
            return
        try:
            _create_private(path)
            self._db = sqlite3.connect(
                path,
                timeout=self.options.busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit below
                check_same_thread=False,  # the lock serialises every use
            )
            self._db.execute("PRAGMA foreign_keys = ON")
            if self.options.wal:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{path}: cannot use WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = NORMAL")
            # executescript commits an open transaction first, so the script opens its own,
            # which stays open for the migration: a new file is created as version 1 and
            # upgraded like any old one.
            self._db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}INSERT INTO schema_version SELECT 1"
                " WHERE NOT EXISTS (SELECT 1 FROM schema_version);"
            )
            try:
                version = self._db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    _migrate(self._db, version)
                    log.info("upgraded call store %s from schema version %d to %d",
                             path, version, SCHEMA_VERSION)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the call store: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the call store: {exc.strerror}") from exc
        if version > SCHEMA_VERSION:
            self._db.close()
            raise StoreError(
                f"{path}: schema version {version}, this program reads {SCHEMA_VERSION}"
            )
        self._stopping = threading.Event()
        self._spool = Spool(self.options.spool_path)
        self._next_replay = 0.0
        self.spooled = 0  # writes that went to the spool (read by the metrics)
        self.write_retries = 0  # failed write attempts that were retried
        if len(self._spool):
            with self._lock:
                self._replay(patient=True)
        log.debug("opened call store %s", path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a reader upgrading never deadlocks.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT leaves the transaction open, a full disk may have rolled it
            # back already: either way none of it was written.
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def _text(self, text: str, language: str | None = None) -> str:
        return redact(text, language or None).text if self.options.redact else text

    def _require_call(self, call_id: str) -> None:
        row = self._db.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone()
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

    def _apply(self, db: sqlite3.Connection, record: dict) -> None:
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
            except sqlite3.IntegrityError as exc:
                if op == "call":
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
                "INSERT OR REPLACE INTO scorecards (call_id, total, band, saved_at)"
                " VALUES (?, ?, ?, ?)",
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
            except sqlite3.Error as exc:
                if not _transient(exc):  # a fault in the record, not in the database
                    raise StoreError(f"{self.options.path}: {record['op']} write refused: "
                                     f"{exc}") from exc
                log.warning("call store %s failing (%s): spooling writes to %s until it is back",
                            self.options.path, exc, self._spool.path)
                self._spool_record(record)

    def _spool_record(self, record: dict) -> None:
        self._spool.append(record)
        self.spooled += 1

    def _retrying(self, work: Callable[[sqlite3.Connection], object]) -> object:
        """Runs `work` in one transaction, retrying transient failures with backoff for
        `busy_timeout` seconds (less once `interrupt` was called); raises the last error."""
        deadline = time.monotonic() + self.options.busy_timeout
        delay = 0.05
        while True:
            wait = max(0.001, min(_ATTEMPT_WAIT_S, deadline - time.monotonic()))
            self._db.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                with self._transaction() as db:
                    return work(db)
            except sqlite3.Error as exc:
                if not _transient(exc):
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
                self._db.execute(f"PRAGMA busy_timeout = {int(self.options.busy_timeout * 1000)}")

    def _replay(self, *, patient: bool) -> None:
        """Writes the spooled records in order (store lock held); each one once, keyed.
        Impatient replays (from a write) try at most once a second, without retrying."""
        now = time.monotonic()
        if not patient and now < self._next_replay:
            return
        self._next_replay = now + _REPLAY_INTERVAL_S
        records = self._spool.records()

        def replay_one(db: sqlite3.Connection, record: dict) -> None:
            try:
                db.execute("INSERT INTO spool_applied (key) VALUES (?)", (record["key"],))
            except sqlite3.IntegrityError:
                return  # written by a replay that was cut short
            self._apply(db, record)

        for record in records:
            try:
                if patient:
                    self._retrying(lambda db, r=record: replay_one(db, r))
                else:
                    self._db.execute(f"PRAGMA busy_timeout = {int(_ATTEMPT_WAIT_S * 1000)}")
                    try:
                        with self._transaction() as db:
                            replay_one(db, record)
                    finally:
                        self._db.execute(
                            f"PRAGMA busy_timeout = {int(self.options.busy_timeout * 1000)}")
            except sqlite3.Error as exc:
                if _transient(exc):
                    log.debug("store still failing (%s); %d writes wait in the spool",
                              exc, len(self._spool))
                    return
                log.error("spooled %s write for call %s cannot be stored and is dropped: %s",
                          record.get("op"), _call_of(record), exc)
            except (StoreError, CallNotFoundError) as exc:
                log.error("spooled %s write cannot be stored and is dropped: %s",
                          record.get("op"), exc)
        self._spool.clear()
        with suppress(sqlite3.Error), self._transaction() as db:
            db.execute("DELETE FROM spool_applied")  # only needed until the spool is empty
        log.info("call store %s is back: %d spooled writes replayed", self.options.path,
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
            self._require_call(call_id)
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
                " reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return Override(cur.lastrowid or 0, *row)

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
            self._require_call(call_id)
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
                " reviewer, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return Label(cur.lastrowid or 0, *row)

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

        def work(db: sqlite3.Connection) -> None:
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
            except sqlite3.Error as exc:
                raise StoreError(f"{self.options.path}: recording of call "
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
        return _types.Recording(*row[:7], masked_spans=spans, created_at=row[8])

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

        def work(db: sqlite3.Connection) -> bool:
            self._require_call(call_id)
            for table in ("recordings", "segments", "events", "score_items", "scorecards"):
                db.execute(f"DELETE FROM {table} WHERE call_id = ?", (call_id,))
            # A foreign key from an audit table refuses the delete: keep the row then.
            db.execute("SAVEPOINT drop_call")
            try:
                db.execute("DELETE FROM calls WHERE call_id = ?", (call_id,))
                return True
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK TO SAVEPOINT drop_call")
                db.execute("UPDATE calls SET purged_at = ? WHERE call_id = ?",
                           (time.time(), call_id))
                return False
            finally:
                db.execute("RELEASE SAVEPOINT drop_call")

        with self._lock:
            try:
                return bool(self._retrying(work))
            except sqlite3.Error as exc:
                raise StoreError(f"{self.options.path}: call '{call_id}' not deleted: "
                                 f"{exc}") from exc

    def calls(self, *, limit: int | None = 100) -> list[CallSummary]:
        """The most recently started calls, newest first, with their effective scores.

        Args:
            limit: The most calls to return; None for all.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT call_id, agent_id, source, started_at, duration, category, end_reason,"
                " (SELECT count(*) FROM events e WHERE e.call_id = c.call_id),"
                " (SELECT count(*) FROM overrides o WHERE o.call_id = c.call_id)"
                " FROM calls c ORDER BY started_at DESC, call_id LIMIT ?",
                (-1 if limit is None else limit,),  # SQLite reads -1 as no limit
            ).fetchall()
            cards = {r[0]: self._scores(r[0]) for r in rows}
        out = []
        for row in rows:
            card, effective = cards[row[0]]
            out.append(
                CallSummary(
                    *row[:7],
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
                with suppress(sqlite3.Error):
                    self._replay(patient=not self._stopping.is_set())
                if len(self._spool):
                    log.warning("%d writes remain in %s; they are stored when the call store "
                                "is next opened", len(self._spool), self._spool.path)
            self._db.close()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- read-only opening (qa review list/show/export) ---------------------------------------

#: The first 16 bytes of every SQLite 3 database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Tables a qa call store has; a file without them is someone else's database.
_STORE_TABLES = frozenset(
    {"schema_version", "calls", "segments", "events", "scorecards", "score_items", "overrides"}
)


def _open_read_only(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Opens an existing call store for reading without changing the file or its folder.

    SQLite's `mode=ro` never writes the database; a store in WAL mode still needs its `-shm`
    file, which cannot be created in a read-only folder, so there the store is opened as
    `immutable` (nobody can be writing to a file in a folder no one may write to).

    Raises:
        StoreError: no such file, not a regular file, not an SQLite database, or an SQLite
            database without the call store's tables or with another schema version.
    """
    import urllib.parse

    from qa.files import open_regular

    name = str(path)
    with open_regular(name, lambda _p, reason: StoreError(f"{name}: {reason}")) as handle:
        head = handle.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "not an SQLite database"
        raise StoreError(f"{name}: not a qa call store ({what})")
    uri = "file:" + urllib.parse.quote(os.path.abspath(name))
    db = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(uri + query, uri=True, timeout=busy_timeout,
                                 isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only = ON")
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            break
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
                db = None
            error = exc
    if db is None:
        raise StoreError(f"{name}: cannot open the call store read-only: {error}") from None
    missing = _STORE_TABLES - tables
    if missing:
        db.close()
        raise StoreError(f"{name}: not a qa call store (an SQLite database without the "
                         f"tables {', '.join(sorted(missing))})")
    version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        db.close()
        raise StoreError(f"{name}: schema version {version}, this program reads {SCHEMA_VERSION}")
    log.debug("opened call store %s read-only", name)
    return db
