"""The review workspace's HTTP application (aiohttp): pages, forms and a little JSON.

Every request but the login page and the static files needs a session; every POST needs the
session's CSRF token; every permission is checked here, on the server, whatever the page
shows. Views of a call, plays of a recording, exports, overrides, labels, dispute actions,
calibration scores and logins go to the audit log.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import datetime as dt
import io
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from aiohttp import web

from qa.errors import CallNotFoundError, StoreError, WorkspaceError
from qa.report import format_clock, format_started
from qa.rules.scoring import BANDS
from qa.store import CallRecord, CallStore
from qa.web import blind
from qa.web.agreement import item_agreement
from qa.web.live import LIVE
from qa.web.media import recording_file
from qa.web.options import WebOptions
from qa.web.search import CallFilter, CallSearch
from qa.web.workspace import ROLES, Session, User, Workspace

__all__ = ["build_app"]

log = logging.getLogger("qa.web.app")

HERE = Path(__file__).parent
SESSION_COOKIE = "qa_session"
LOGIN_COOKIE = "qa_login"
#: Sent with every response: scripts, styles and media only from this server, no framing.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; media-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: Sent over HTTPS only: browsers then refuse plain HTTP to this host for a year, so a
#: network attacker cannot strip TLS from a later visit.
_HSTS = "max-age=31536000"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
#: Largest row id the database holds (a signed 64-bit integer); a longer number in an
#: address names nothing (SQLite raised OverflowError on it: a 500).
_MAX_ID = (1 << 63) - 1
#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP "CSV
#: injection"); agent ids come from SIP headers and categories from rule packs.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Context:
    """What every handler reads: the options and the open stores."""

    options: WebOptions
    store: CallStore
    workspace: Workspace
    search: CallSearch
    templates: jinja2.Environment


CONTEXT = web.AppKey("context", Context)
class _Throttle:
    """Failed logins per client address in a sliding window (`AccountOptions`).

    Holds at most `_ADDRESSES` addresses (the oldest forgotten first), so a flood from many
    addresses takes bounded memory."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, collections.deque[float]] = {}
        self._warned: dict[str, float] = {}

    def _recent(self, address: str, now: float) -> collections.deque[float]:
        times = self._failures.pop(address, None) or collections.deque(maxlen=self.limit)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        self._failures[address] = times  # now the newest
        while len(self._failures) > _ADDRESSES:
            del self._failures[next(iter(self._failures))]
        return times

    def refused(self, address: str, now: float) -> float:
        """Seconds until `address` may try again (0: it may now)."""
        times = self._recent(address, now)
        return times[0] + self.window_s - now if len(times) >= self.limit else 0.0

    def failed(self, address: str, now: float) -> None:
        self._recent(address, now).append(now)

    def first_refusal(self, address: str, now: float) -> bool:
        """True once per window for a refused address: that refusal is audited, not the rest."""
        if now - self._warned.get(address, -self.window_s) < self.window_s:
            return False
        self._warned.pop(address, None)
        self._warned[address] = now
        while len(self._warned) > _ADDRESSES:
            del self._warned[next(iter(self._warned))]
        return True


#: Client addresses whose failed logins are remembered.
_ADDRESSES = 10_000
THROTTLE = web.AppKey("throttle", _Throttle)
#: When each (user, call) last had a live-transcript read audited.
FEED_SEEN = web.AppKey("feed_seen", dict)
#: The signed-in session, as the login middleware sets it on each request.
SESSION = web.RequestKey("session", Session)
#: Seconds between audit entries for one user following one live call.
_FEED_AUDIT_S = 600.0


def _row_id(request: web.Request, key: str) -> int:
    """The numeric id in the address (the route allows digits only), 404 when out of range."""
    value = int(request.match_info[key])
    if value > _MAX_ID:
        raise web.HTTPNotFound(text=f"404: no such {key.replace('_', ' ')}")
    return value


def _segment(value: str) -> str:
    """A value quoted as one path segment of an address: a call id may hold `?`, `#`, `%`
    or a line break (a file's name), which would otherwise change where a link goes."""
    return urllib.parse.quote(value, safe="")


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _ctx(request: web.Request) -> Context:
    return request.app[CONTEXT]


def _session(request: web.Request) -> Session:
    return request[SESSION]


def _address(request: web.Request) -> str:
    return request.remote or ""


def _audit(request: web.Request, action: str, call_id: str = "", detail: str = "") -> None:
    session = request.get(SESSION)
    user = session.user.username if session else ""
    _ctx(request).workspace.audit(user, action, call_id=call_id, detail=detail,
                                  address=_address(request))


def _blind(request: web.Request) -> frozenset[str]:
    """The calls this user may not see others' points of (open calibration; `qa.web.blind`)."""
    return blind.blind_calls(_ctx(request).workspace, _session(request).user)


def _require(request: web.Request, capability: str) -> User:
    user = _session(request).user
    if not user.can(capability):
        raise web.HTTPForbidden(text=f"403: your role ({user.role}) may not do this")
    return user


def _render(request: web.Request, name: str, status: int = 200, **values: object) -> web.Response:
    session = request.get(SESSION)
    page = _ctx(request).templates.get_template(name).render(
        user=session.user if session else None, csrf=session.csrf if session else "",
        clock=format_clock, started=format_started, **values)
    return web.Response(text=page, content_type="text/html", status=status)


def _error(request: web.Request, message: str, status: int = 400) -> web.Response:
    return _render(request, "error.html", status=status, message=message)


async def _form(request: web.Request):
    """The posted form; a body that does not parse (a multipart without its boundary) is a 400,
    not a 500."""
    try:
        return await request.post()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"400: unreadable form: {exc}") from None


@web.middleware
async def _security(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    except Exception:
        # Whatever slipped past the handlers: logged here with its request, answered with a
        # plain 500 that carries the same headers as every other answer and no traceback.
        log.exception("%s %s failed", request.method, request.path)
        response = web.Response(status=500, text="500: internal error (logged)")
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if _ctx(request).options.tls:
        response.headers.setdefault("Strict-Transport-Security", _HSTS)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def _authenticate(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    if request.path == "/login" or request.path.startswith("/static/"):
        return await handler(request)
    session = _ctx(request).workspace.session(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        if request.method == "GET" and not request.path.startswith("/api/"):
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="401: log in first")
    request[SESSION] = session
    if request.method == "POST":
        form = await _form(request)
        sent = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
        if not Workspace.csrf_ok(session, sent):
            raise web.HTTPForbidden(text="403: missing or wrong CSRF token")
    return await handler(request)


# -- login ---------------------------------------------------------------------------------

async def login_page(request: web.Request) -> web.Response:
    # Keep a browser's token across loads of the page: a second load (a reload, a prefetch)
    # must not orphan the form the user is typing into.
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not _TOKEN.match(nonce):
        nonce = secrets.token_urlsafe(24)
    response = _render(request, "login.html", nonce=nonce, message="")
    _set_login_cookie(request, response, nonce)
    return response


def _set_login_cookie(request: web.Request, response: web.Response, nonce: str) -> None:
    # Double-submit token: a login form posted from another site lacks the cookie's value.
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Strict", path="/login",
                        secure=_ctx(request).options.tls, max_age=3600)


async def login(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    form = await _form(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not secrets.compare_digest(nonce, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="403: missing or wrong CSRF token")
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    throttle, address, now = request.app[THROTTLE], _address(request), time.monotonic()
    wait = throttle.refused(address, now)
    if wait:
        if throttle.first_refusal(address, now):
            log.warning("logins from %s refused for %.0f s after %d failures", address, wait,
                        throttle.limit)
            ctx.workspace.audit("", "login_throttled", detail=f"{throttle.limit} failures",
                                address=address)
        raise web.HTTPTooManyRequests(text="429: too many failed logins from this address; "
                                      "try later", headers={"Retry-After": str(int(wait) + 1)})
    try:
        user = await asyncio.to_thread(ctx.workspace.authenticate, username, password)
    except WorkspaceError as exc:
        throttle.failed(address, now)
        known = ctx.workspace.user(username) is not None
        ctx.workspace.audit(username if known else "", "login_failed",
                            detail=str(exc) if known else "unknown user",
                            address=_address(request))
        fresh = secrets.token_urlsafe(24)
        response = _render(request, "login.html", status=401, nonce=fresh, message=str(exc))
        _set_login_cookie(request, response, fresh)
        return response
    token, session = ctx.workspace.start_session(user)
    ctx.workspace.audit(user.username, "login", detail=user.role, address=_address(request))
    response = web.HTTPSeeOther("/calls")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=ctx.options.tls, max_age=int(ctx.options.accounts.session_s))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.Response:
    _ctx(request).workspace.end_session(request.cookies.get(SESSION_COOKIE, ""))
    _audit(request, "logout")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# -- the call list -------------------------------------------------------------------------

def _day(value: str, field: str) -> float | None:
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"400: {field} must be a date (YYYY-MM-DD)") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _number(value: str, field: str) -> float | None:
    if not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"400: {field} must be a number") from None


def _filter(request: web.Request) -> CallFilter:
    q = request.query
    user = _session(request).user
    until = _day(q.get("until", ""), "until")
    return CallFilter(
        text=q.get("q", "").strip(),
        # An agent sees their own calls whatever the address says.
        agent=user.agent_id if not user.can("all_calls") else q.get("agent", "").strip(),
        since=_day(q.get("since", ""), "since"),
        until=None if until is None else until + 86400.0,  # the whole day named
        band=q.get("band", ""), category=q.get("category", "").strip(),
        rule=q.get("rule", "").strip(),
        min_score=_number(q.get("min", ""), "min"), max_score=_number(q.get("max", ""), "max"),
        limit=_ctx(request).options.page_size,
    )


async def call_list(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    what = _filter(request)
    calls, snippets = await asyncio.to_thread(blind.search, ctx.search, what, _blind(request))
    values = await asyncio.to_thread(ctx.search.values)
    if not _session(request).user.can("all_calls"):
        values["agents"] = []
    return _render(request, "calls.html", calls=calls, snippets=snippets, query=request.query,
                   values=values,
                   bands=[label for _, label in BANDS], export=request.query_string)


async def export(request: web.Request) -> web.Response:
    _require(request, "export")
    ctx = _ctx(request)
    calls = (await asyncio.to_thread(blind.search, ctx.search, _filter(request),
                                     _blind(request)))[0]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["call_id", "agent_id", "started", "duration", "category", "automatic_total",
                     "total", "band", "events", "overrides"])
    for c in calls:
        writer.writerow([_cell(v) for v in (
            c.call_id, c.agent_id, format_started(c.started_at),
            "" if c.duration is None else round(c.duration, 1), c.category or "",
            c.automatic_total, c.total, c.band, c.events, c.overrides)])
    _audit(request, "export", detail=f"{len(calls)} calls; filter {request.query_string}")
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="calls.csv"'})


# -- one call ------------------------------------------------------------------------------

def _load_call(request: web.Request, call_id: str, action: str) -> CallRecord:
    """The call, if the user may read it; the refusal is audited too."""
    ctx = _ctx(request)
    user = _session(request).user
    try:
        record = ctx.store.call(call_id)
    except CallNotFoundError:
        raise web.HTTPNotFound(text=f"404: no call '{call_id}'") from None
    if not user.can("all_calls") and record.info.agent_id != user.agent_id:
        _audit(request, f"{action}_denied", call_id)
        raise web.HTTPForbidden(text="403: this is another agent's call")
    return record


async def call_page(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    call_id = request.match_info["call_id"]
    # The store's position before the call is read: its live stream starts there.
    after = await asyncio.to_thread(request.app[LIVE].rows.head)
    record = _load_call(request, call_id, "view_call")
    _audit(request, "view_call", call_id)
    automatic = {i.rule_id: i for i in (record.scorecard.items if record.scorecard else ())}
    rules = sorted({i.rule_id for i in automatic.values()} | {e.rule_id for e in record.events})
    user = _session(request).user
    disputes = ctx.workspace.disputes(call_id=call_id)
    hidden = call_id in _blind(request)
    if hidden:
        record = blind.blind_record(record)
        disputes = [blind.blind_dispute(d) for d in disputes]
    return _render(request, "call.html", record=record, automatic=automatic, rules=rules,
                   blind=hidden,
                   audio=recording_file(ctx.store, call_id) is not None, disputes=disputes,
                   running=record.end_reason is None, after=str(after),
                   can_dispute=user.can("dispute") and record.effective is not None,
                   outcomes=ctx.options.disputes.outcomes)


async def audio(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    call_id = request.match_info["call_id"]
    _load_call(request, call_id, "play_recording")
    found = recording_file(ctx.store, call_id)
    if found is None:
        raise web.HTTPNotFound(text="404: no recording kept for this call")
    # The player asks for byte ranges as it seeks; one entry per play, not per range. A
    # malformed Range header raised ValueError here (a 500); FileResponse answers it with 416.
    try:
        first = request.http_range.start in (None, 0)
    except ValueError:
        first = False
    if first:
        _audit(request, "play_recording", call_id)
    return web.FileResponse(found.path, headers={"Content-Type": found.content_type})


async def feed(request: web.Request) -> web.Response:
    """A call's transcript and events as JSON, for the page of a call in progress.

    A page following a live call asks every 2 s; one audit entry per user and call every
    `_FEED_AUDIT_S` says who read it without flooding the log."""
    call_id = request.match_info["call_id"]
    record = _load_call(request, call_id, "view_call")
    key = (_session(request).user.username, call_id)
    now = time.monotonic()
    seen = request.app[FEED_SEEN]
    if now - seen.get(key, -_FEED_AUDIT_S) >= _FEED_AUDIT_S:
        seen[key] = now
        _audit(request, "view_call", call_id, "live transcript")
    return web.json_response({
        "running": record.end_reason is None,
        "segments": [{"speaker": str(s.speaker), "start": s.start, "text": s.text.strip()}
                     for s in record.segments],
        "events": [_event_json(e) for e in record.events],
    })


def _event_json(e) -> dict:
    return {"time": e.time, "kind": str(e.kind), "rule": e.rule_id, "severity": str(e.severity),
            "evidence": e.evidence, "message": e.message, "match": e.match}


async def override(request: web.Request) -> web.Response:
    user = _require(request, "review")
    call_id = request.match_info["call_id"]
    _load_call(request, call_id, "override")
    if call_id in _blind(request):
        raise web.HTTPForbidden(text="403: this call is in an open calibration session")
    form = await request.post()
    rule = str(form.get("rule", ""))
    try:
        points = float(str(form.get("points", "")))
        done = _ctx(request).store.add_override(call_id, rule, points=points,
                                                reviewer=user.username,
                                                reason=str(form.get("reason", "")))
    except ValueError as exc:  # StoreError and a non-number both are ValueErrors' kin
        return _error(request, f"override refused: {exc}")
    except StoreError as exc:
        return _error(request, f"override refused: {exc}")
    _audit(request, "override", call_id,
           f"{rule}: {done.old_points:g} -> {done.new_points:g}; {done.reason}")
    raise web.HTTPSeeOther(f"/calls/{_segment(call_id)}#scorecard")


async def label(request: web.Request) -> web.Response:
    user = _require(request, "review")
    call_id = request.match_info["call_id"]
    _load_call(request, call_id, "label")
    form = await request.post()
    try:
        done = _ctx(request).store.add_label(
            call_id, str(form.get("segment", "")), str(form.get("rule", "")),
            str(form.get("verdict", "")), reviewer=user.username,
            reason=str(form.get("reason", "")))
    except StoreError as exc:
        return _error(request, f"label refused: {exc}")
    _audit(request, "label", call_id,
           f"segment {done.segment} {done.verdict} for {done.rule_id}; {done.reason}")
    raise web.HTTPSeeOther(f"/calls/{_segment(call_id)}#transcript")


# -- disputes ------------------------------------------------------------------------------

async def open_dispute(request: web.Request) -> web.Response:
    user = _require(request, "dispute")
    call_id = request.match_info["call_id"]
    record = _load_call(request, call_id, "dispute_open")
    form = await request.post()
    rule = str(form.get("rule", ""))
    if record.effective is None or rule not in {i.rule_id for i in record.effective.items}:
        return _error(request, f"call '{call_id}' has no scorecard item '{rule}'")
    try:
        dispute = _ctx(request).workspace.open_dispute(call_id, rule, user.username,
                                                       str(form.get("comment", "")))
    except WorkspaceError as exc:
        return _error(request, f"dispute refused: {exc}")
    _audit(request, "dispute_open", call_id, f"dispute {dispute.id} on {rule}: {dispute.comment}")
    raise web.HTTPSeeOther(f"/calls/{_segment(call_id)}#disputes")


async def disputes_page(request: web.Request) -> web.Response:
    user = _session(request).user
    workspace = _ctx(request).workspace
    found = workspace.disputes() if user.can("decide") else workspace.disputes(
        agent=user.username)
    hidden = _blind(request)
    found = [blind.blind_dispute(d) if d.call_id in hidden else d for d in found]
    return _render(request, "disputes.html", disputes=found,
                   outcomes=_ctx(request).options.disputes.outcomes)


async def decide_dispute(request: web.Request) -> web.Response:
    user = _require(request, "decide")
    ctx = _ctx(request)
    form = await request.post()
    try:
        dispute = ctx.workspace.dispute(_row_id(request, "dispute_id"))
        if dispute.call_id in _blind(request):
            raise WorkspaceError(f"call '{dispute.call_id}' is in an open calibration session")
        state = str(form.get("state", ""))
        comment = str(form.get("comment", ""))
        points = _number(str(form.get("points", "")), "points")
        if state == "accepted" and points is not None:
            # Check the points before the decision is written; the override follows it.
            card = ctx.store.call(dispute.call_id).scorecard
            item = next((i for i in (card.items if card else ())
                         if i.rule_id == dispute.rule_id), None)
            if item is None or not 0 <= points <= item.points_possible:
                raise WorkspaceError(f"points for '{dispute.rule_id}' out of range")
        dispute = ctx.workspace.decide_dispute(dispute.id, state, user.username, comment)
        _audit(request, "dispute_decide", dispute.call_id,
               f"dispute {dispute.id} on {dispute.rule_id}: {state}; {comment}")
        if state == "accepted" and points is not None:
            done = ctx.store.add_override(dispute.call_id, dispute.rule_id, points=points,
                                          reviewer=user.username,
                                          reason=f"dispute {dispute.id} accepted: {comment}")
            _audit(request, "override", dispute.call_id,
                   f"{dispute.rule_id}: {done.old_points:g} -> {done.new_points:g}; "
                   f"{done.reason}")
    except (WorkspaceError, StoreError) as exc:
        return _error(request, f"decision refused: {exc}")
    raise web.HTTPSeeOther("/disputes")


# -- calibration ---------------------------------------------------------------------------

async def calibrations(request: web.Request) -> web.Response:
    _require(request, "calibrate")
    return _render(request, "calibrations.html", sessions=_ctx(request).workspace.calibrations())


async def start_calibration(request: web.Request) -> web.Response:
    user = _require(request, "manage_calibration")
    form = await request.post()
    ids = str(form.get("calls", "")).replace(",", " ").split()
    try:
        session = _ctx(request).workspace.start_calibration(str(form.get("name", "")),
                                                            user.username, ids)
    except WorkspaceError as exc:
        return _error(request, f"calibration refused: {exc}")
    _audit(request, "calibration_start", detail=f"session {session.id}: {' '.join(ids)}")
    raise web.HTTPSeeOther(f"/calibration/{session.id}")


def _calibration(request: web.Request):
    try:
        return _ctx(request).workspace.calibration(_row_id(request, "session_id"))
    except (WorkspaceError, ValueError):
        raise web.HTTPNotFound(text="404: no such calibration session") from None


async def calibration_page(request: web.Request) -> web.Response:
    user = _require(request, "calibrate")
    session = _calibration(request)
    scores = _ctx(request).workspace.calibration_scores(session.id)
    done = {c for (r, c, _i) in scores if r == user.username}
    return _render(request, "calibration.html", session=session, done=done,
                   closed=blind.closed(_ctx(request).workspace, session.id),
                   can_close=user.username == session.created_by or user.can("audit"))


async def close_calibration(request: web.Request) -> web.Response:
    user = _require(request, "manage_calibration")
    session = _calibration(request)
    if user.username != session.created_by and not user.can("audit"):
        raise web.HTTPForbidden(text="403: only who started the session (or an admin) closes it")
    try:
        blind.close_calibration(_ctx(request).workspace, session.id, user.username)
    except WorkspaceError as exc:
        return _error(request, str(exc))
    _audit(request, "calibration_close", detail=f"session {session.id}")
    raise web.HTTPSeeOther(f"/calibration/{session.id}")


async def calibration_call(request: web.Request) -> web.Response:
    user = _require(request, "calibrate")
    session = _calibration(request)
    call_id = request.match_info["call_id"]
    if call_id not in session.call_ids:
        raise web.HTTPNotFound(text="404: this call is not in the session")
    record = _load_call(request, call_id, "view_call")
    _audit(request, "view_call", call_id, f"calibration {session.id} (blind)")
    mine = {i: p for (r, c, i), p in _ctx(request).workspace.calibration_scores(
        session.id).items() if r == user.username and c == call_id}
    return _render(request, "calibrate_call.html", session=session, record=record, mine=mine,
                   audio=recording_file(_ctx(request).store, call_id) is not None)


async def score_calibration(request: web.Request) -> web.Response:
    user = _require(request, "calibrate")
    session = _calibration(request)
    call_id = request.match_info["call_id"]
    record = _load_call(request, call_id, "calibration_score")
    if blind.closed(_ctx(request).workspace, session.id) is not None:
        return _error(request, f"calibration session {session.id} is closed")
    form = await request.post()
    items = {i.rule_id: i for i in (record.scorecard.items if record.scorecard else ())}
    points = {}
    for rule, item in items.items():
        value = _number(str(form.get(f"points:{rule}", "")), rule)
        if value is None or not 0 <= value <= item.points_possible:
            return _error(request, f"give '{rule}' points from 0 to {item.points_possible:g}")
        points[rule] = value
    try:
        _ctx(request).workspace.add_calibration_scores(session.id, call_id, user.username,
                                                       points)
    except WorkspaceError as exc:
        return _error(request, str(exc))
    _audit(request, "calibration_score", call_id,
           f"session {session.id}: " + ", ".join(f"{r}={p:g}" for r, p in points.items()))
    raise web.HTTPSeeOther(f"/calibration/{session.id}")


async def calibration_report(request: web.Request) -> web.Response:
    user = _require(request, "manage_calibration")
    ctx = _ctx(request)
    session = _calibration(request)
    if user.username != session.created_by and blind.closed(ctx.workspace, session.id) is None:
        raise web.HTTPForbidden(text="403: the session is open; its report is for who started "
                                "it until it closes")
    scores = ctx.workspace.calibration_scores(session.id)
    automatic: dict[str, dict[str, float]] = {}
    descriptions: dict[str, str] = {}
    for call_id in session.call_ids:
        card = ctx.store.call(call_id).scorecard
        for item in card.items if card else ():
            automatic.setdefault(item.rule_id, {})[call_id] = item.points_awarded
            descriptions.setdefault(item.rule_id, item.description)
    rows = []
    for rule in automatic:
        ratings: dict[str, dict[str, float]] = {}
        for (reviewer, call_id, rule_id), points in scores.items():
            if rule_id == rule:
                ratings.setdefault(reviewer, {})[call_id] = points
        rows.append(item_agreement(rule, ratings, automatic[rule]))
    reviewers = sorted({r for (r, _c, _i) in scores})
    _audit(request, "calibration_report", detail=f"session {session.id}")
    return _render(request, "calibration_report.html", session=session, rows=rows,
                   descriptions=descriptions, reviewers=reviewers)


# -- live floor and audit ------------------------------------------------------------------

async def live_page(request: web.Request) -> web.Response:
    _require(request, "live")
    return _render(request, "live.html")


async def live_json(request: web.Request) -> web.Response:
    _require(request, "live")
    ctx = _ctx(request)
    calls = []
    for call_id in await asyncio.to_thread(ctx.search.running):
        try:
            record = ctx.store.call(call_id)
        except CallNotFoundError:
            continue  # ended and purged between the two reads
        last = record.segments[-1].end if record.segments else 0.0
        calls.append({"call_id": call_id, "agent": record.info.agent_id,
                      "started": format_started(record.info.started_at),
                      "audio_time": max([last] + [e.time for e in record.events]),
                      "events": [_event_json(e) for e in record.events][-8:]})
    return web.json_response({"calls": calls})


async def audit_page(request: web.Request) -> web.Response:
    _require(request, "audit")
    q = request.query
    entries = _ctx(request).workspace.audit_log(username=q.get("user", "").strip(),
                                                action=q.get("action", "").strip(),
                                                call_id=q.get("call", "").strip())
    hidden = _blind(request)
    entries = [blind.blind_entry(e) if e.call_id in hidden else e for e in entries]
    return _render(request, "audit.html", entries=entries, query=q)


async def users_page(request: web.Request) -> web.Response:
    _require(request, "audit")
    workspace = _ctx(request).workspace
    return _render(request, "users.html", users=workspace.users(), now=time.time(),
                   roles=ROLES, me=_session(request).user.username,
                   min_password=workspace.accounts.min_password)


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/calls")


def templates() -> jinja2.Environment:
    """The page templates, HTML-escaped by default."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["segment"] = _segment
    return env


def build_app(options: WebOptions, store: CallStore) -> web.Application:
    """The web application over an open call store (which has created the tables).

    Args:
        options: Server and policy options.
        store: The call store, opened read-write.
    """
    app = web.Application(middlewares=[_security, _authenticate], client_max_size=1 << 20)
    workspace = Workspace(options.db, options.accounts, options.disputes,
                          redact=store.options.redact)
    search = CallSearch(options.db)
    app[CONTEXT] = Context(options, store, workspace, search, templates())
    app[FEED_SEEN] = {}
    app[THROTTLE] = _Throttle(options.accounts.address_failures,
                              options.accounts.address_window_s)

    async def close(_app: web.Application) -> None:
        workspace.close()
        search.close()

    app.on_cleanup.append(close)
    app.add_routes([
        web.get("/", home),
        web.get("/login", login_page), web.post("/login", login), web.post("/logout", logout),
        web.get("/calls", call_list), web.get("/calls.csv", export),
        web.get("/calls/{call_id}", call_page), web.get("/calls/{call_id}/audio", audio),
        web.get("/api/calls/{call_id}", feed),
        web.post("/calls/{call_id}/override", override), web.post("/calls/{call_id}/label", label),
        web.post("/calls/{call_id}/disputes", open_dispute),
        web.get("/disputes", disputes_page),
        web.post("/disputes/{dispute_id:\\d+}/decide", decide_dispute),
        web.get("/calibration", calibrations), web.post("/calibration", start_calibration),
        web.get("/calibration/{session_id:\\d+}", calibration_page),
        web.get("/calibration/{session_id:\\d+}/report", calibration_report),
        web.post("/calibration/{session_id:\\d+}/close", close_calibration),
        web.get("/calibration/{session_id:\\d+}/calls/{call_id}", calibration_call),
        web.post("/calibration/{session_id:\\d+}/calls/{call_id}", score_calibration),
        web.get("/live", live_page), web.get("/api/live", live_json),
        web.get("/audit", audit_page), web.get("/users", users_page),
        web.static("/static", HERE / "static"),
    ])
    from qa.web import admin, streams  # they import this module: only once it is loaded

    streams.add_routes(app)
    admin.add_routes(app)
    return app
