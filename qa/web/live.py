"""The live floor, pushed: Server-Sent Events for the calls in progress and for one open call.

One `LiveFeed` per server follows the call store's new rows (segments and events by their
ids, calls by whether they have ended) with one cheap poll, and fans each change out to every
browser subscribed; no browser polls. This works the same whether the pipeline writes the
store from this process (`qa.web.server.WorkspaceThread` beside `qa run`'s monitor, which
wakes the feed after each write through `wake`) or from another process on the same file.

A stream's event ids are the store's position `S.E` (last segment id, last event id), so a
browser that reconnects with `Last-Event-ID` gets from the store exactly the rows it missed,
even across a server restart. The floor stream starts with (and after a reconnect resumes
from) a snapshot of the floor, which is the floor's whole state. Streams end when the server
shuts down: `close` wakes every handler, which returns at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from qa.db import Backend
from qa.prompts.messages import prompt_message
from qa.report import format_started
from qa.store import StoreOptions, open_backend
from qa.types import Event, EventKind, Severity, Speaker

__all__ = ["LIVE", "Change", "Cursor", "LiveFeed", "LiveOptions", "LiveRows", "Subscription",
           "event_json", "segment_json", "sse"]

log = logging.getLogger("qa.web.live")

#: How long a shutdown waits for the feed's last read of the store.
_LAST_READ_S = 3.0

_CURSOR = re.compile(r"^(\d{1,18})\.(\d{1,18})$")
#: Events the floor shows per call (the newest).
FLOOR_EVENTS = 8


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How the server follows the store for the live streams.

    Attributes:
        poll_s: Seconds between two reads of the store's new rows (one read per server,
            whatever the number of browsers; a write in this process wakes it sooner).
        keepalive_s: Seconds of quiet after which a stream sends a comment line, so proxies
            and the browser keep the connection open (and the stream's session is checked
            again at least this often).
        backlog: Changes a slow browser may fall behind before its stream is ended (it then
            reconnects and resumes from the store by its last event id).
        batch: Most rows of each kind read per poll.
        settle_s: Seconds a gap in the ids of the store's new rows is waited for on
            PostgreSQL, where another node's transaction may still fill it (see `LiveRows`).
    """

    poll_s: float = 0.5
    keepalive_s: float = 5.0
    backlog: int = 2000
    batch: int = 1000
    settle_s: float = 2.0


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in the store: the last segment id and the last event id seen."""

    segment: int = 0
    event: int = 0

    def __str__(self) -> str:
        return f"{self.segment}.{self.event}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        """The cursor written as `S.E`, or None for anything else."""
        found = _CURSOR.match(text.strip())
        return cls(int(found.group(1)), int(found.group(2))) if found else None


@dataclass(frozen=True, slots=True)
class Change:
    """One thing that happened on the floor, as a stream sends it.

    Attributes:
        cursor: The store position after this change (the stream's event id).
        call_id: The call.
        kind: `started`, `segment`, `prompt` (a rule event) or `ended`.
        data: The JSON payload.
    """

    cursor: Cursor
    call_id: str
    kind: str
    data: dict


def _prompt_text(row: tuple) -> str:
    # The agent's prompt as the prompt page shows it (the rule's text, else a default).
    event = Event(row[1], row[2], EventKind(row[3]), row[4], Severity(row[5]), row[6],
                  row[7], row[8], Speaker(row[9]))
    return prompt_message(event, redacted=False)["message"]


def segment_json(row: tuple) -> dict:
    """A `segments` row as a stream sends it."""
    return {"id": row[0], "call": row[1], "speaker": row[2], "start": row[3], "end": row[4],
            "text": row[5].strip()}


def event_json(row: tuple) -> dict:
    """An `events` row as a stream sends it, with the prompt the agent was shown."""
    try:
        prompt = _prompt_text(row)
    except ValueError:  # a kind this version does not know: show the stored message
        prompt = row[8]
    return {"id": row[0], "call": row[1], "time": row[2], "kind": row[3], "rule": row[4],
            "severity": row[5], "points": row[6], "evidence": row[7], "message": row[8],
            "speaker": row[9], "prompt": prompt}


_SEGMENTS = ('SELECT id, call_id, speaker, start, "end", text FROM segments WHERE id > ?'
             " {call} ORDER BY id LIMIT ?")
_EVENTS = ("SELECT id, call_id, time, kind, rule_id, severity, points, evidence, message,"
           " speaker FROM events WHERE id > ? {call} ORDER BY id LIMIT ?")


class LiveRows:
    """The store reads behind the live streams, over a connection of their own (SQLite or
    PostgreSQL, through the store's backend).

    On PostgreSQL several nodes write the store, and ids come from a sequence when a row is
    inserted, not when its transaction commits: a row may become visible after rows with
    higher ids were read. A read of the whole floor therefore stops before a gap in the ids
    until the gap is `settle_s` old (a transaction still open fills it; one rolled back
    never does), so the feed's position never passes a row that is still to come. One call
    is written by one node, in id order, so a read of one call needs no such wait.

    Args:
        location: The call store, an SQLite file or a PostgreSQL URL (created by
            `CallStore` first); or its `StoreOptions`.
        settle_s: Seconds a gap in the ids is waited for on PostgreSQL.
    """

    def __init__(self, location: Path | str | StoreOptions, *, settle_s: float = 2.0) -> None:
        options = location if isinstance(location, StoreOptions) else StoreOptions(path=location)
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._db: Backend = open_backend(replace(options, read_only=False))
        # (table, first missing id) -> when the gap was first seen (monotonic seconds).
        self._gaps: dict[tuple[str, int], float] = {}

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exception classes (a busy or unreachable store)."""
        return self._db.errors

    def close(self) -> None:
        """Closes the connection."""
        with self._lock:
            self._db.close()

    def head(self) -> Cursor:
        """The store's current position (the newest segment and event ids)."""
        with self._lock:
            seg = self._db.execute("SELECT max(id) FROM segments").fetchone()[0]
            evt = self._db.execute("SELECT max(id) FROM events").fetchone()[0]
        return Cursor(seg or 0, evt or 0)

    def after(self, cursor: Cursor, limit: int, call_id: str = "") -> tuple[list, list]:
        """Segments and events stored after `cursor` (of one call, or of all), oldest first."""
        call = "AND call_id = ?" if call_id else ""
        extra = (call_id,) if call_id else ()
        with self._lock:
            segments = self._db.execute(_SEGMENTS.format(call=call),
                                        (cursor.segment, *extra, limit)).fetchall()
            events = self._db.execute(_EVENTS.format(call=call),
                                      (cursor.event, *extra, limit)).fetchall()
            if self._db.dialect == "postgresql" and not call_id:
                segments = self._settled("segments", cursor.segment, segments)
                events = self._settled("events", cursor.event, events)
        return segments, events

    def _settled(self, table: str, last: int, rows: list) -> list:
        """`rows` (in id order, after id `last`) up to the first gap younger than
        `settle_s`."""
        now = time.monotonic()
        for gap in [g for g in self._gaps if g[0] == table and g[1] <= last]:
            del self._gaps[gap]  # passed: filled, or waited for long enough
        expected = last + 1
        for n, row in enumerate(rows):
            if row[0] > expected:
                seen = self._gaps.setdefault((table, expected), now)
                if now - seen < self.settle_s:
                    return rows[:n]
            expected = row[0] + 1
        return rows

    def running(self) -> dict[str, dict]:
        """The calls in progress: call id -> agent, start time."""
        with self._lock:
            rows = self._db.execute("SELECT call_id, agent_id, started_at FROM calls"
                                    " WHERE ended_at IS NULL ORDER BY started_at").fetchall()
        return {r[0]: {"call": r[0], "agent": r[1], "started_at": r[2],
                       "started": format_started(r[2])} for r in rows}

    def ended(self, call_id: str) -> str | None:
        """Why the call ended, or None while it runs (or when it is not stored)."""
        with self._lock:
            row = self._db.execute("SELECT ended_at, end_reason FROM calls WHERE call_id = ?",
                                   (call_id,)).fetchone()
        return None if row is None or row[0] is None else (row[1] or "ended")

    def floor(self) -> list[dict]:
        """The calls in progress with their newest events and how much audio was heard."""
        calls = self.running()
        with self._lock:
            for call_id, call in calls.items():
                events = self._db.execute(
                    _EVENTS.format(call="AND call_id = ?").replace("ORDER BY id LIMIT ?",
                                                                   "ORDER BY id DESC LIMIT ?"),
                    (0, call_id, FLOOR_EVENTS)).fetchall()
                heard = self._db.execute('SELECT max("end") FROM segments WHERE call_id = ?',
                                         (call_id,)).fetchone()[0] or 0.0
                call["events"] = [event_json(r) for r in reversed(events)]
                call["audio_time"] = max([heard] + [e["time"] for e in call["events"]])
        return list(calls.values())


class LiveFeed:
    """Follows the store for every live stream of one server and fans the changes out.

    Args:
        rows: The store reads.
        options: Poll interval, keep-alive, backlog.
    """

    def __init__(self, rows: LiveRows, options: LiveOptions | None = None) -> None:
        self.rows = rows
        self.options = options or LiveOptions()
        self.polls = 0  # reads of the store (for the tests: one per interval, not per browser)
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Starts following the store (call from the server's event loop)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._follow(), name="qa-live-feed")

    async def close(self) -> None:
        """Ends every stream and stops following: one last read of the store first, so a
        call that ended just before the shutdown (`qa run` stops the server right after its
        last call) still reaches its streams as `ended` before they close."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True),
                                       _LAST_READ_S)
            except TimeoutError:  # a store that hangs must not hold up the shutdown
                log.warning("live feed: the last read of the store took over %.0f s",
                            _LAST_READ_S)
        for sub in list(self._subscribers):
            _put(sub, None)

    @property
    def closed(self) -> bool:
        """True once the server shuts down."""
        return self._closed

    def wake(self) -> None:
        """Reads the store now rather than at the next interval; safe from any thread (the
        pipeline calls it after a write when it runs in this process)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    @property
    def subscribers(self) -> int:
        """Streams open now."""
        return len(self._subscribers)

    async def _follow(self) -> None:
        cursor = await asyncio.to_thread(self.rows.head)
        running = await asyncio.to_thread(self.rows.running)
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.poll_s)
            self._wake.clear()
            last = self._closed  # closing: read once more for the streams, then stop
            try:
                if not self._subscribers:
                    if last:
                        return
                    # Nobody listens: keep up with the store without reading its rows.
                    cursor = await asyncio.to_thread(self.rows.head)
                    running = await asyncio.to_thread(self.rows.running)
                    continue
                cursor, running, changes = await asyncio.to_thread(self._poll, cursor,
                                                                   running)
                self._fan_out(changes)
            except self.rows.errors as exc:  # a busy or vanished store: try again next time
                log.warning("live feed: cannot read the store: %s", exc)
            if last:
                return

    def _poll(self, cursor: Cursor, running: dict) -> tuple[Cursor, dict, list[Change]]:
        self.polls += 1
        changes: list[Change] = []
        now_running = self.rows.running()
        for call_id, call in now_running.items():
            if call_id not in running:
                changes.append(Change(cursor, call_id, "started", call))
        segments, events = self.rows.after(cursor, self.options.batch)
        for row in segments:
            cursor = Cursor(row[0], cursor.event)
            changes.append(Change(cursor, row[1], "segment", segment_json(row)))
        for row in events:
            cursor = Cursor(cursor.segment, row[0])
            changes.append(Change(cursor, row[1], "prompt", event_json(row)))
        for call_id in running:
            if call_id not in now_running:
                reason = self.rows.ended(call_id) or "purged"
                changes.append(Change(cursor, call_id, "ended", {"call": call_id,
                                                                 "reason": reason}))
        return cursor, now_running, changes

    def _fan_out(self, changes: list[Change]) -> None:
        for sub in list(self._subscribers):
            for change in changes:
                if sub.call_id and change.call_id != sub.call_id:
                    continue
                if not _put(sub, change):
                    break

    def subscribe(self, call_id: str = "") -> Subscription:
        """Registers a stream for the changes from now on (of one call, or of all); use it as
        a context manager, which unregisters it."""
        sub = Subscription(self, call_id)
        self._subscribers.add(sub)
        self._wake.set()  # a new browser should not wait a whole interval for its first news
        return sub


class Subscription:
    """One stream's queue of changes (see `LiveFeed.subscribe`)."""

    def __init__(self, feed: LiveFeed, call_id: str) -> None:
        self.feed = feed
        self.call_id = call_id  # '' for the whole floor
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(feed.options.backlog)
        self.overflowed = False

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.feed._subscribers.discard(self)

    async def next(self) -> Change | None:
        """The next change, or None after `keepalive_s` of quiet.

        Raises:
            StopAsyncIteration: The server shuts down, or this stream fell `backlog` behind.
        """
        if self.overflowed or (self.feed.closed and self.queue.empty()):
            raise StopAsyncIteration
        try:
            change = await asyncio.wait_for(self.queue.get(), self.feed.options.keepalive_s)
        except TimeoutError:
            return None
        if change is None or self.overflowed:
            raise StopAsyncIteration
        return change


#: The server's feed, as the web application holds it.
LIVE = web.AppKey("live", LiveFeed)


def _put(sub: Subscription, change: Change | None) -> bool:
    try:
        sub.queue.put_nowait(change)
        return True
    except asyncio.QueueFull:
        # Too slow: end this stream; the browser resumes from the store by its event id.
        sub.overflowed = True
        with_room = sub.queue
        while not with_room.empty():
            with_room.get_nowait()
        with_room.put_nowait(None)
        return False


def sse(kind: str, data: dict, event_id: str = "") -> bytes:
    """One Server-Sent Event (JSON data on one line)."""
    head = f"id: {event_id}\n" if event_id else ""
    return (head + f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n").encode()
