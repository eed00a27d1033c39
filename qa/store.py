"""The call store: calls, segments, events, scorecards and reviewer overrides in SQLite.

Every write is its own committed transaction, so a process killed mid-call loses at most
what it had not yet handed to the store (the utterance in flight). WAL mode with
`synchronous=NORMAL` is durable against a killed process (not against power loss, which
would cost the last commits only, never the file's integrity), and lets review commands read
while a live pipeline writes. The database file and its `-wal`/`-shm` companions are created
owner-only (SQLite gives the companions the main file's mode).

Personal data is redacted (`qa.redact`) before it reaches the disk unless the options say
otherwise. Overrides are an append-only audit trail (triggers refuse to change them); the
automatic scorecard is kept as the scorer wrote it and the effective one is computed on read.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa.errors import CallNotFoundError, StoreError
from qa.redact import redact
from qa.rules.scoring import band
from qa.sources.base import CallInfo
from qa.types import Event, EventKind, Scorecard, ScoreItem, Segment, Severity, Speaker, Word

__all__ = [
    "CallRecord",
    "CallStore",
    "CallSummary",
    "Override",
    "StoreOptions",
    "default_db_path",
]

log = logging.getLogger("qa.store")

#: Version of the schema below; `schema_version` records it for later migrations.
SCHEMA_VERSION = 1

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
        busy_timeout: Seconds a statement waits for another process's lock before failing.
        read_only: Open an existing store for reading only (`qa review list/show/export`):
            the file is never created, chmod-ed, switched to WAL or given tables, and a file
            that is not a qa call store is refused.
    """

    path: Path = field(default_factory=default_db_path)
    redact: bool = True
    wal: bool = True
    busy_timeout: float = 5.0
    read_only: bool = False


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


def _redact_words(words: tuple[Word, ...], text: str, language: str | None) -> tuple[Word, ...]:
    """Redacts words in step with their segment text, so a number dictated over several
    words becomes one placeholder word spanning their times."""
    spans = redact(text, language).spans
    out: list[Word] = []
    cursor = 0
    taken: set[int] = set()
    for word in words:
        piece = word.text.strip()
        at = text.find(piece, cursor) if piece else -1
        if at < 0:
            out.append(replace(word, text=redact(word.text, language).text))
            continue
        cursor = at + len(piece)
        hit = next((i for i, s in enumerate(spans) if s.start < cursor and at < s.end), None)
        if hit is None:
            out.append(word)
        elif hit in taken:
            # Later words of one redacted run fold into its placeholder word.
            out[-1] = replace(out[-1], end=word.end)
        else:
            taken.add(hit)
            out.append(replace(word, text=" " + spans[hit].placeholder))
    return tuple(out)


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
            # executescript commits an open transaction first, so the script carries its own.
            self._db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}INSERT INTO schema_version SELECT {SCHEMA_VERSION}"
                " WHERE NOT EXISTS (SELECT 1 FROM schema_version); COMMIT;"
            )
            version = self._db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the call store: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{path}: cannot create the call store: {exc.strerror}") from exc
        if version != SCHEMA_VERSION:
            self._db.close()
            raise StoreError(
                f"{path}: schema version {version}, this program reads {SCHEMA_VERSION}"
            )
        log.debug("opened call store %s", path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a reader upgrading never deadlocks.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _text(self, text: str, language: str | None = None) -> str:
        return redact(text, language or None).text if self.options.redact else text

    def _require_call(self, call_id: str) -> None:
        row = self._db.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            raise CallNotFoundError(call_id)

    def start_call(self, call: CallInfo) -> None:
        """Records a new call (again for the same id: its details are updated)."""
        with self._lock, self._transaction() as db:
            db.execute(
                "INSERT INTO calls (call_id, agent_id, source, started_at, channels, sample_rate)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(call_id) DO UPDATE SET"
                " agent_id = excluded.agent_id, source = excluded.source,"
                " started_at = excluded.started_at, channels = excluded.channels,"
                " sample_rate = excluded.sample_rate",
                (
                    call.call_id,
                    call.agent_id,
                    call.source,
                    call.started_at,
                    ",".join(str(c) for c in call.channels),
                    call.sample_rate,
                ),
            )

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
        with self._lock, self._transaction() as db:
            self._require_call(segment.call_id)
            db.execute(
                'INSERT INTO segments (call_id, speaker, start, "end", text, words, language,'
                " avg_logprob, no_speech_prob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    segment.call_id,
                    str(segment.speaker),
                    segment.start,
                    segment.end,
                    text,
                    words_json,
                    segment.language,
                    segment.avg_logprob,
                    segment.no_speech_prob,
                ),
            )

    def add_event(self, event: Event) -> None:
        """Stores a rule event (evidence and message redacted) and commits at once.

        Raises:
            CallNotFoundError: The call was never started.
        """
        with self._lock, self._transaction() as db:
            self._require_call(event.call_id)
            db.execute(
                "INSERT INTO events (call_id, time, kind, rule_id, severity, points, evidence,"
                ' message, speaker, "end") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (
                    event.call_id,
                    event.time,
                    str(event.kind),
                    event.rule_id,
                    str(event.severity),
                    event.points,
                    self._text(event.evidence),
                    self._text(event.message),
                    str(event.speaker),
                    event.end,
                ),
            )

    def end_call(self, call_id: str, *, duration: float, category: str | None, reason: str) -> None:
        """Records the end of a call: its audio length, category and why it ended.

        Raises:
            CallNotFoundError: The call was never started.
        """
        with self._lock, self._transaction() as db:
            cur = db.execute(
                "UPDATE calls SET ended_at = ?, duration = ?, category = ?, end_reason = ?"
                " WHERE call_id = ?",
                (time.time(), duration, category, reason, call_id),
            )
            if cur.rowcount == 0:
                raise CallNotFoundError(call_id)

    def save_scorecard(self, scorecard: Scorecard) -> None:
        """Stores the scorer's automatic result, replacing an earlier automatic result of the
        same call (a re-score); reviewer overrides are kept and still apply.

        Raises:
            CallNotFoundError: The call was never started.
        """
        with self._lock, self._transaction() as db:
            self._require_call(scorecard.call_id)
            db.execute("DELETE FROM score_items WHERE call_id = ?", (scorecard.call_id,))
            db.execute(
                "INSERT OR REPLACE INTO scorecards (call_id, total, band, saved_at)"
                " VALUES (?, ?, ?, ?)",
                (scorecard.call_id, scorecard.total, scorecard.band, time.time()),
            )
            db.executemany(
                "INSERT INTO score_items (call_id, position, rule_id, description,"
                " points_possible, points_awarded, evidence, times)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        scorecard.call_id,
                        i,
                        item.rule_id,
                        item.description,
                        item.points_possible,
                        item.points_awarded,
                        json.dumps([self._text(e) for e in item.evidence], ensure_ascii=False),
                        json.dumps(list(item.times)),
                    )
                    for i, item in enumerate(scorecard.items)
                ],
            )

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
                ' "end" FROM events WHERE call_id = ? ORDER BY time, id',
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
        """Closes the database; the store cannot be used afterwards."""
        with self._lock:
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
