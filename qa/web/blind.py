"""Blind calibration everywhere: while a calibration session is open, its reviewers see no
other reviewer's points for its calls, on any page or API, until the session is closed.

Who is blind: every user who may calibrate, for every call of an open session that user did
not start (the supervisor running a session reads its report; the reviewers score). For those
calls the call page shows the automatic scorecard only (no overrides, no dispute decisions, no
override form), the call list, search results and CSV export show the automatic total and
band and no override count, the dispute list hides decisions, the audit log hides the details
of overrides, dispute decisions and calibration scores, and a co-supervisor's agreement report
is refused. A score filter (band, score range) is applied to a blind call's automatic total,
so filtering cannot reveal the effective one either.

The queries are small functions over the workspace's backend connection, in the portable SQL
of `qa.web.workspace`: they run on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import dataclasses
import time

from qa.errors import WorkspaceError
from qa.rules.scoring import BANDS
from qa.rules.scoring import band as band_of
from qa.store import CallListing, CallRecord
from qa.web.search import CallFilter, CallSearch
from qa.web.workspace import AuditEntry, Dispute, User, Workspace

__all__ = ["blind_calls", "blind_listing", "blind_record", "close_calibration",
           "closed", "search"]

#: Audit actions whose details carry points.
_SCORING_ACTIONS = frozenset({"override", "dispute_decide", "calibration_score"})
#: Calls read, at most, to apply a score filter to blind calls' automatic totals.
_UNFILTERED = 5000


def close_calibration(workspace: Workspace, session_id: int, username: str) -> None:
    """Closes a calibration session: scoring ends and its calls are no longer blind.

    Raises:
        WorkspaceError: No such session, or it is closed already.
    """
    with workspace.transaction() as db:
        cur = db.execute("UPDATE calibration_sessions SET closed_at = ?, closed_by = ?"
                         " WHERE id = ? AND closed_at IS NULL",
                         (time.time(), username, session_id))
        if cur.rowcount == 0:
            raise WorkspaceError(f"calibration session {session_id} is not open")


def closed(workspace: Workspace, session_id: int) -> tuple[float, str] | None:
    """When and by whom the session was closed, or None while it is open."""
    rows = workspace.read("SELECT closed_at, closed_by FROM calibration_sessions"
                           " WHERE id = ?", (session_id,))
    return None if not rows or rows[0][0] is None else (rows[0][0], rows[0][1])


def blind_calls(workspace: Workspace, user: User) -> frozenset[str]:
    """The calls `user` must not see others' points of: those of open sessions they did
    not start (none for a user who may not calibrate)."""
    if not user.can("calibrate"):
        return frozenset()
    rows = workspace.read(
        "SELECT DISTINCT c.call_id FROM calibration_calls c JOIN calibration_sessions s"
        " ON s.id = c.session_id WHERE s.closed_at IS NULL AND s.created_by != ?",
        (user.username,))
    return frozenset(r[0] for r in rows)


def blind_record(record: CallRecord) -> CallRecord:
    """The call as a blind reviewer sees it: the automatic scorecard, no overrides."""
    return dataclasses.replace(record, overrides=(), effective=record.scorecard)


def blind_listing(call: CallListing) -> CallListing:
    """A call list line with the automatic total and band and no override count."""
    total = call.automatic_total
    return dataclasses.replace(call, total=total, overrides=0,
                               band=band_of(total) if total is not None else "")


def blind_dispute(dispute: Dispute) -> Dispute:
    """A dispute without its decision's author and comment (they may carry points)."""
    return dataclasses.replace(dispute, decided_by="", decision="")


def blind_entry(entry: AuditEntry) -> AuditEntry:
    """An audit entry without the points its detail may carry."""
    if entry.action not in _SCORING_ACTIONS:
        return entry
    return dataclasses.replace(entry, detail="(hidden while calibration is open)")


def _passes(total: float | None, what: CallFilter) -> bool:
    if total is None:
        return not (what.band or what.min_score is not None or what.max_score is not None)
    if what.min_score is not None and total < what.min_score:
        return False
    if what.max_score is not None and total > what.max_score:
        return False
    if what.band:
        lower = -1.0
        for upper, label in BANDS:
            if label == what.band:
                return lower < total <= upper
            lower = upper
        return False
    return True


def search(finder: CallSearch, what: CallFilter,
           blind: frozenset[str]) -> tuple[list[CallListing], dict[str, str]]:
    """`CallSearch.search` as a user blind to `blind` sees it: those calls with automatic
    totals, and filtered by them."""
    calls, snippets = finder.search(what)
    if not blind:
        return calls, snippets
    scored = what.band or what.min_score is not None or what.max_score is not None
    if scored:
        # The store filtered on effective totals: blind calls are judged again on theirs.
        open_filter = dataclasses.replace(what, band="", min_score=None, max_score=None,
                                          limit=max(what.limit, _UNFILTERED))
        unfiltered, more = finder.search(open_filter)
        kept = [c for c in calls if c.call_id not in blind]
        kept += [c for c in unfiltered if c.call_id in blind and _passes(c.automatic_total,
                                                                        what)]
        kept.sort(key=lambda c: (-c.started_at, c.call_id))
        calls, snippets = kept[:what.limit], {**more, **snippets}
    return [blind_listing(c) if c.call_id in blind else c for c in calls], snippets
