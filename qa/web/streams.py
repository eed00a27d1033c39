"""The live floor's Server-Sent Event streams (`/api/live/stream`, `/api/calls/ID/stream`).

Each stream is authorised like the page it feeds, when it opens and again every few seconds
while it runs (a logout or a disabled account ends it): the floor for supervisors and admins,
a call's stream for whoever may open the call (an agent: their own calls). Opening a call's
stream is audited (`view_live`, one entry per user and call every 10 minutes, so a reconnect
does not flood the log). The payloads carry transcripts and prompts, never scores.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from qa.web import app as pages
from qa.web.live import LIVE, Cursor, LiveFeed, LiveRows, event_json, segment_json, sse

__all__ = ["LIVE", "add_routes"]

log = logging.getLogger("qa.web.streams")

#: Seconds between re-checks of a stream's session.
_RECHECK_S = 5.0
#: Rows of a call sent at most when a stream (re)opens; a call has far fewer.
_CATCH_UP = 100_000


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        **pages._SECURITY_HEADERS, "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    # Tells the browser how long to wait before it reconnects after a dropped stream.
    await response.write(b"retry: 1000\n\n")
    return response


class _Guard:
    """Re-checks the stream's session now and then: a logout or a disabled account ends it."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.checked = time.monotonic()

    async def still_allowed(self) -> bool:
        if time.monotonic() - self.checked < _RECHECK_S:
            return True
        self.checked = time.monotonic()
        ctx = pages._ctx(self.request)
        token = self.request.cookies.get(pages.SESSION_COOKIE, "")
        session = await asyncio.to_thread(ctx.workspace.session, token)
        return session is not None and session.user.username == \
            pages._session(self.request).user.username


async def floor_stream(request: web.Request) -> web.StreamResponse:
    """The calls in progress: a `floor` snapshot, then `started`, `prompt`, `progress` and
    `ended` as they happen. A reconnect starts again from a snapshot (the floor's whole
    state), so nothing is missed."""
    pages._require(request, "live")
    feed = request.app[LIVE]
    guard = _Guard(request)
    response = await _open(request)
    try:
        with feed.subscribe() as sub:
            # Subscribed first, then the snapshot: a change between the two is sent twice
            # (the page drops an event it has by its id), never lost.
            head = await asyncio.to_thread(feed.rows.head)
            calls = await asyncio.to_thread(feed.rows.floor)
            await response.write(sse("floor", {"calls": calls}, str(head)))
            while await guard.still_allowed():
                try:
                    change = await sub.next()
                except StopAsyncIteration:
                    break
                if change is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                data = change.data
                if change.kind == "segment":  # the floor shows how far a call is, not words
                    data = {"call": change.call_id, "audio_time": data["end"]}
                kind = "progress" if change.kind == "segment" else change.kind
                await response.write(sse(kind, data, str(change.cursor)))
    except ConnectionResetError:
        pass  # the browser went away
    return response


async def call_stream(request: web.Request) -> web.StreamResponse:
    """One call's transcript and prompts: the rows after the browser's position
    (`Last-Event-ID`, else `?after=S.E`, else the whole call), then each `segment` and
    `prompt` as it is stored, and `ended` when the call ends."""
    call_id = request.match_info["call_id"]
    pages._load_call(request, call_id, "view_live")  # 403 (audited) for another agent's call
    user = pages._session(request).user
    key = (user.username, call_id)
    seen = request.app[pages.FEED_SEEN]
    now = time.monotonic()
    if now - seen.get(key, -pages._FEED_AUDIT_S) >= pages._FEED_AUDIT_S:
        seen[key] = now
        pages._audit(request, "view_live", call_id, "live transcript and prompts")
    cursor = Cursor.parse(request.headers.get("Last-Event-ID", "")) or Cursor.parse(
        request.query.get("after", "")) or Cursor()
    feed = request.app[LIVE]
    guard = _Guard(request)
    response = await _open(request)
    try:
        with feed.subscribe(call_id) as sub:
            segments, events = await asyncio.to_thread(feed.rows.after, cursor, _CATCH_UP,
                                                       call_id)
            for row in segments:
                cursor = Cursor(row[0], cursor.event)
                await response.write(sse("segment", segment_json(row), str(cursor)))
            for row in events:
                cursor = Cursor(cursor.segment, row[0])
                await response.write(sse("prompt", event_json(row), str(cursor)))
            reason = await asyncio.to_thread(feed.rows.ended, call_id)
            if reason is not None:
                await response.write(sse("ended", {"call": call_id, "reason": reason},
                                         str(cursor)))
                return response
            while await guard.still_allowed():
                try:
                    change = await sub.next()
                except StopAsyncIteration:
                    break
                if change is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                # A row the catch-up sent already is skipped, by its id.
                if change.kind == "segment":
                    if change.data["id"] <= cursor.segment:
                        continue
                    cursor = Cursor(change.data["id"], cursor.event)
                elif change.kind == "prompt":
                    if change.data["id"] <= cursor.event:
                        continue
                    cursor = Cursor(cursor.segment, change.data["id"])
                elif change.kind != "ended":
                    continue
                await response.write(sse(change.kind, change.data, str(cursor)))
                if change.kind == "ended":
                    break
    except ConnectionResetError:
        pass
    return response


def add_routes(app: web.Application) -> None:
    """Adds the two streams and the feed behind them (started and closed with the app)."""
    context = app[pages.CONTEXT]
    rows = LiveRows(context.options.db, settle_s=context.options.live.settle_s)
    feed = LiveFeed(rows, context.options.live)
    app[LIVE] = feed

    async def start(_app: web.Application) -> None:
        await feed.start()

    async def stop(_app: web.Application) -> None:
        await feed.close()  # every stream returns now: the server stops within its timeout

    async def close(_app: web.Application) -> None:
        rows.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.on_cleanup.append(close)
    app.add_routes([web.get("/api/live/stream", floor_stream),
                    web.get("/api/calls/{call_id}/stream", call_stream)])
