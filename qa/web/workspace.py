"""The review workspace's own tables: users, sessions, the audit log, disputes, calibration.

The tables live in the call store (created by its migration steps, `qa.store`), SQLite or
PostgreSQL alike; this module opens its own connection through the store's backend layer
(`qa.db`) beside the `CallStore` the server reads calls through, so the call store's module
stays the one home of calls, and this one of who may read them and what they did. Passwords
are hashed with argon2id (`argon2-cffi`); a session token is 32 random bytes and only its
SHA-256 is stored, so a copy of the database opens no session.

The audit log, disputes, dispute decisions and calibration scores are append-only (triggers
refuse UPDATE and DELETE on either backend, and TRUNCATE on PostgreSQL); a dispute's state is
its latest decision.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from qa.db import Backend
from qa.errors import WorkspaceError
from qa.redact import redact
from qa.store import StoreOptions, open_backend
from qa.web.options import AccountOptions, DisputeOptions

__all__ = [
    "CAN",
    "ROLES",
    "AuditEntry",
    "CalibrationSession",
    "Dispute",
    "Session",
    "User",
    "Workspace",
]

log = logging.getLogger("qa.web.workspace")

ROLES = ("agent", "reviewer", "supervisor", "admin")
#: What each role may do. `own_calls`: only calls whose agent id is the user's.
CAN: dict[str, frozenset[str]] = {
    "agent": frozenset({"own_calls", "dispute"}),
    "reviewer": frozenset({"all_calls", "review", "decide", "calibrate", "export"}),
    "supervisor": frozenset({"all_calls", "review", "decide", "calibrate", "export", "live",
                             "manage_calibration"}),
    "admin": frozenset({"all_calls", "review", "decide", "calibrate", "export", "live",
                        "manage_calibration", "audit"}),
}
_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_HASHER = PasswordHasher()
#: Unknown login names whose failures are counted (the oldest forgotten first): bounds the
#: memory a flood of invented names can take.
_UNKNOWN_NAMES = 10_000
#: Verified against when the username is unknown, so a wrong name costs as long as a
#: wrong password and the timing tells nobody which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class User:
    """An account of the workspace.

    Attributes:
        username: The login name.
        role: One of `ROLES`.
        agent_id: The agent id an agent's calls carry ('' for other roles).
        disabled: True when the account may not log in.
        locked_until: Epoch seconds until which logins are refused after repeated failures.
        created_at: Epoch seconds.
    """

    username: str
    role: str
    agent_id: str
    disabled: bool
    locked_until: float
    created_at: float

    def can(self, what: str) -> bool:
        """True when the user's role allows `what` (see `CAN`)."""
        return what in CAN[self.role]


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: its user and the CSRF token every POST must carry."""

    user: User
    csrf: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log; never edited.

    Attributes:
        id: Order of entry.
        at: Epoch seconds.
        username: Who ('' for a failed login of an unknown name).
        action: What (`login`, `view_call`, `play_recording`, `export`, `override`, ...).
        call_id: The call it concerns ('' if none).
        detail: More (the item, the filter, the reason).
        address: The client's address.
    """

    id: int
    at: float
    username: str
    action: str
    call_id: str
    detail: str
    address: str


@dataclass(frozen=True, slots=True)
class Dispute:
    """An agent's challenge of one scorecard item and where it stands.

    Attributes:
        id, call_id, rule_id: Which item of which call.
        opened_by, comment, opened_at: The agent, why, when.
        deadline: Epoch seconds by which a reviewer must decide.
        state: `open`, `expired` or the latest decision (`DisputeOptions.outcomes`).
        decided_by, decision, decided_at: The latest decision ('' and 0 while open).
    """

    id: int
    call_id: str
    rule_id: str
    opened_by: str
    comment: str
    opened_at: float
    deadline: float
    state: str
    decided_by: str = ""
    decision: str = ""
    decided_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CalibrationSession:
    """A set of calls that several reviewers score blind."""

    id: int
    name: str
    created_by: str
    created_at: float
    call_ids: tuple[str, ...]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Workspace:
    """Users, sessions, audit, disputes and calibration in the call store's database.

    Args:
        location: The call store, an SQLite file or a PostgreSQL URL (opened once by
            `CallStore` first, which creates the tables); or its `StoreOptions`.
        accounts, disputes: Policies; defaults as documented on their classes.
        redact: Redact free text (comments) like the call store does.

    Raises:
        WorkspaceError: The database has no workspace tables.
        StoreError: The database cannot be opened.
    """

    def __init__(self, location: Path | str | StoreOptions,
                 accounts: AccountOptions | None = None,
                 disputes: DisputeOptions | None = None, *, redact: bool = True) -> None:
        options = location if isinstance(location, StoreOptions) else StoreOptions(path=location)
        self.accounts = accounts or AccountOptions()
        self.dispute_options = disputes or DisputeOptions()
        self._redact = redact
        self._lock = threading.Lock()
        self._unknown: dict[str, tuple[int, float]] = {}  # name -> (failures, locked until)
        self._unknown_lock = threading.Lock()
        self._db: Backend = open_backend(replace(options, read_only=False))
        if "audit" not in self._db.tables():
            self._db.close()
            raise WorkspaceError(f"{options.where}: no workspace tables "
                                 "(open it with CallStore first)")

    @contextmanager
    def transaction(self) -> Iterator[Backend]:
        """One transaction on the workspace tables, committed at the end of the block and
        rolled back on an error (for the workspace's companion modules: admin, blind)."""
        with self._lock:
            self._db.begin()
            try:
                yield self._db
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def read(self, sql: str, args: tuple = ()) -> list:
        """The rows of one query on the workspace tables."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _text(self, text: str) -> str:
        return redact(text).text if self._redact else text

    def close(self) -> None:
        """Closes the connection."""
        with self._lock:
            self._db.close()

    # -- users --------------------------------------------------------------------------

    def add_user(self, username: str, role: str, password: str, *, agent_id: str = "") -> User:
        """Creates an account.

        Args:
            username: Letters, digits and `._@-`, at most 64.
            role: One of `ROLES`.
            password: At least `AccountOptions.min_password` characters; stored as an
                argon2id hash.
            agent_id: For an agent, the agent id their calls carry (required).

        Raises:
            WorkspaceError: A bad name, role or password, or the name is taken.
        """
        if not _USERNAME.match(username):
            raise WorkspaceError(f"username '{username}': use 1-64 letters, digits or ._@-")
        if role not in ROLES:
            raise WorkspaceError(f"role '{role}': choose one of {', '.join(ROLES)}")
        if role == "agent" and not agent_id.strip():
            raise WorkspaceError("an agent account needs --agent-id (the id their calls carry)")
        if len(password) < self.accounts.min_password:
            raise WorkspaceError(
                f"password too short: at least {self.accounts.min_password} characters")
        now = time.time()
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO users (username, role, agent_id, password_hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (username, role, agent_id.strip(), _HASHER.hash(password), now),
                )
        except self._db.errors as exc:
            if not self._db.integrity(exc):
                raise
            raise WorkspaceError(f"user '{username}' already exists") from None
        return User(username, role, agent_id.strip(), False, 0.0, now)

    def users(self) -> list[User]:
        """Every account, by name."""
        rows = self.read(
            "SELECT username, role, agent_id, disabled, locked_until, created_at FROM users"
            " ORDER BY username")
        return [User(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in rows]

    def user(self, username: str) -> User | None:
        """The account, or None."""
        return next((u for u in self.users() if u.username == username), None)

    def set_disabled(self, username: str, disabled: bool = True) -> None:
        """Disables (or enables) an account; disabling also ends its sessions.

        Raises:
            WorkspaceError: No such user.
        """
        with self.transaction() as db:
            cur = db.execute("UPDATE users SET disabled = ? WHERE username = ?",
                             (int(disabled), username))
            if cur.rowcount == 0:
                raise WorkspaceError(f"no user '{username}'")
            if disabled:
                db.execute("DELETE FROM sessions WHERE username = ?", (username,))

    def authenticate(self, username: str, password: str) -> User:
        """Checks a login; counts failures and locks the account after too many.

        Returns:
            The user.

        Raises:
            WorkspaceError: Wrong name or password ('invalid'), a locked or disabled account.
                The message never says whether the name exists.
        """
        now = time.time()
        # The attempt is counted (and the lock set by the last allowed one) before the slow
        # hash check, in one transaction: concurrent guesses cannot all read the same count
        # and so try more passwords than `max_failures` (they did: 30 at once all verified).
        last = False
        with self.transaction() as db:
            row = db.execute(
                "SELECT password_hash, disabled, locked_until, failed_logins FROM users"
                " WHERE username = ?", (username,)).fetchone()
            if row is not None and row[2] <= now:
                last = row[3] + 1 >= self.accounts.max_failures
                db.execute("UPDATE users SET failed_logins = ?, locked_until = ?"
                           " WHERE username = ?",
                           (0 if last else row[3] + 1,
                            now + self.accounts.lockout_s if last else 0.0, username))
        if row is None:
            if self._unknown_locked(username, now):
                raise WorkspaceError("account locked after repeated failed logins; try later")
            with suppress(VerificationError):
                _HASHER.verify(_DUMMY_HASH, password)
            raise WorkspaceError("invalid username or password")
        stored, disabled, locked_until, failures = row
        if locked_until > now:
            raise WorkspaceError("account locked after repeated failed logins; try later")
        try:
            _HASHER.verify(stored, password)
            ok = True
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok and last:
            log.warning("account %s locked for %.0f s after %d failed logins",
                        username, self.accounts.lockout_s, failures + 1)
        if ok:
            with self.transaction() as db:
                db.execute("UPDATE users SET failed_logins = 0, locked_until = 0"
                           " WHERE username = ?", (username,))
                if _HASHER.check_needs_rehash(stored):
                    db.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                               (_HASHER.hash(password), username))
        if not ok:
            raise WorkspaceError("invalid username or password")
        if disabled:
            raise WorkspaceError("account disabled")
        user = self.user(username)
        assert user is not None
        return user

    def _unknown_locked(self, username: str, now: float) -> bool:
        """Counts a failed login of a name that has no account, like one that has: without
        this, the sixth try of a real name said "locked" and of an unknown one "invalid",
        which told an attacker which names exist. The newest `_UNKNOWN_NAMES` are kept."""
        with self._unknown_lock:
            failures, until = self._unknown.pop(username, (0, 0.0))
            if until > now:
                self._unknown[username] = (failures, until)
                return True
            failures += 1
            if failures >= self.accounts.max_failures:
                failures, until = 0, now + self.accounts.lockout_s
            self._unknown[username] = (failures, until)
            while len(self._unknown) > _UNKNOWN_NAMES:
                del self._unknown[next(iter(self._unknown))]
            return False

    # -- sessions -----------------------------------------------------------------------

    def start_session(self, user: User) -> tuple[str, Session]:
        """Opens a session; returns the cookie token (shown once, stored hashed) and it."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        expires = now + self.accounts.session_s
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            db.execute("INSERT INTO sessions (token_hash, username, csrf, created_at,"
                       " expires_at) VALUES (?, ?, ?, ?, ?)",
                       (_token_hash(token), user.username, csrf, now, expires))
        return token, Session(user, csrf, expires)

    def session(self, token: str) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired, user disabled)."""
        if not token:
            return None
        found = self.read(
            "SELECT s.csrf, s.expires_at, u.username, u.role, u.agent_id, u.disabled,"
            " u.locked_until, u.created_at FROM sessions s JOIN users u"
            " ON u.username = s.username WHERE s.token_hash = ?", (_token_hash(token),))
        row = found[0] if found else None
        if row is None or row[1] < time.time() or row[5]:
            return None
        return Session(User(row[2], row[3], row[4], bool(row[5]), row[6], row[7]), row[0], row[1])

    def end_session(self, token: str) -> None:
        """Logs a session out."""
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    @staticmethod
    def csrf_ok(session: Session, sent: str) -> bool:
        """True when a form's CSRF token is the session's (compared in constant time)."""
        return bool(sent) and hmac.compare_digest(session.csrf, sent)

    # -- audit --------------------------------------------------------------------------

    def audit(self, username: str, action: str, *, call_id: str = "", detail: str = "",
              address: str = "") -> None:
        """Appends one entry to the audit log (nothing can change or remove it)."""
        with self.transaction() as db:
            db.execute("INSERT INTO audit (at, username, action, call_id, detail, address)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), username, action, call_id, self._text(detail), address))

    def audit_log(self, *, username: str = "", action: str = "", call_id: str = "",
                  limit: int = 500) -> list[AuditEntry]:
        """Audit entries, newest first, optionally of one user, action or call."""
        where, args = [], []
        for column, value in (("username", username), ("action", action), ("call_id", call_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT id, at, username, action, call_id, detail, address FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.read(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [AuditEntry(*r) for r in rows]

    # -- disputes -----------------------------------------------------------------------

    def open_dispute(self, call_id: str, rule_id: str, agent: str, comment: str) -> Dispute:
        """Records an agent's dispute of one scorecard item.

        Raises:
            WorkspaceError: No comment, the call's limit reached, or this item already has an
                open dispute.
        """
        if not comment.strip():
            raise WorkspaceError("a dispute needs a comment")
        limit = self.dispute_options.per_call
        now = time.time()
        deadline = now + self.dispute_options.deadline_days * 86400.0
        current = self.disputes(call_id=call_id)
        if len(current) >= limit:
            raise WorkspaceError(f"call '{call_id}' already has {len(current)} disputes "
                                 f"(the limit per evaluation is {limit})")
        if any(d.rule_id == rule_id and d.state == "open" for d in current):
            raise WorkspaceError(f"item '{rule_id}' already has an open dispute")
        with self.transaction() as db:
            dispute_id = db.execute(
                "INSERT INTO disputes (call_id, rule_id, opened_by, comment, opened_at,"
                " deadline) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (call_id, rule_id, agent, self._text(comment), now, deadline)).fetchone()[0]
        return self.dispute(dispute_id)

    def decide_dispute(self, dispute_id: int, state: str, reviewer: str, comment: str) -> Dispute:
        """Records a reviewer's decision on an open dispute.

        Raises:
            WorkspaceError: No such dispute, not open (decided or expired), a state not in
                `DisputeOptions.outcomes`, or no comment.
        """
        if state not in self.dispute_options.outcomes:
            raise WorkspaceError(f"state '{state}': choose one of "
                                 f"{', '.join(self.dispute_options.outcomes)}")
        if not comment.strip():
            raise WorkspaceError("a decision needs a comment")
        dispute = self.dispute(dispute_id)
        if dispute.state != "open":
            raise WorkspaceError(f"dispute {dispute_id} is {dispute.state}, not open")
        with self.transaction() as db:
            db.execute("INSERT INTO dispute_decisions (dispute_id, state, decided_by, comment,"
                       " decided_at) VALUES (?, ?, ?, ?, ?)",
                       (dispute_id, state, reviewer, self._text(comment), time.time()))
        return self.dispute(dispute_id)

    def dispute(self, dispute_id: int) -> Dispute:
        """One dispute.

        Raises:
            WorkspaceError: No such dispute.
        """
        found = self._disputes("d.id = ?", (dispute_id,))
        if not found:
            raise WorkspaceError(f"no dispute {dispute_id}")
        return found[0]

    def disputes(self, *, call_id: str = "", agent: str = "") -> list[Dispute]:
        """Disputes, newest first, of one call or one agent (or all)."""
        where, args = ["1 = 1"], []
        if call_id:
            where.append("d.call_id = ?")
            args.append(call_id)
        if agent:
            where.append("d.opened_by = ?")
            args.append(agent)
        return self._disputes(" AND ".join(where), tuple(args))

    def _disputes(self, where: str, args: tuple) -> list[Dispute]:
        rows = self.read(
            "SELECT d.id, d.call_id, d.rule_id, d.opened_by, d.comment, d.opened_at,"
            " d.deadline, x.state, x.decided_by, x.comment, x.decided_at FROM disputes d"
            " LEFT JOIN dispute_decisions x ON x.id = (SELECT max(id) FROM"
            f" dispute_decisions WHERE dispute_id = d.id) WHERE {where} ORDER BY d.id DESC",
            args)
        now = time.time()
        out = []
        for r in rows:
            state = r[7] or ("expired" if now > r[6] else "open")
            out.append(Dispute(id=r[0], call_id=r[1], rule_id=r[2], opened_by=r[3],
                               comment=r[4], opened_at=r[5], deadline=r[6], state=state,
                               decided_by=r[8] or "", decision=r[9] or "",
                               decided_at=r[10] or 0.0))
        return out

    # -- calibration --------------------------------------------------------------------

    def start_calibration(self, name: str, created_by: str,
                          call_ids: list[str]) -> CalibrationSession:
        """Creates a calibration session over `call_ids` (which must be stored calls).

        Raises:
            WorkspaceError: No name or no calls, or a call that is not stored.
        """
        ids = list(dict.fromkeys(c.strip() for c in call_ids if c.strip()))
        if not name.strip() or not ids:
            raise WorkspaceError("a calibration session needs a name and at least one call")
        try:
            with self.transaction() as db:
                sid = db.execute("INSERT INTO calibration_sessions (name, created_by,"
                                 " created_at) VALUES (?, ?, ?) RETURNING id",
                                 (name.strip(), created_by, time.time())).fetchone()[0]
                db.executemany("INSERT INTO calibration_calls (session_id, call_id, position)"
                               " VALUES (?, ?, ?)", [(sid, c, n) for n, c in enumerate(ids)])
        except self._db.errors as exc:
            if not self._db.integrity(exc):
                raise
            raise WorkspaceError("every call of a calibration session must be stored") from None
        return self.calibration(sid)

    def calibrations(self) -> list[CalibrationSession]:
        """Every calibration session, newest first."""
        ids = [r[0] for r in self.read("SELECT id FROM calibration_sessions ORDER BY id DESC")]
        return [self.calibration(i) for i in ids]

    def calibration(self, session_id: int) -> CalibrationSession:
        """One calibration session.

        Raises:
            WorkspaceError: No such session.
        """
        found = self.read("SELECT id, name, created_by, created_at FROM calibration_sessions"
                           " WHERE id = ?", (session_id,))
        calls = self.read("SELECT call_id FROM calibration_calls WHERE session_id = ?"
                           " ORDER BY position, call_id", (session_id,))
        row = found[0] if found else None
        if row is None:
            raise WorkspaceError(f"no calibration session {session_id}")
        return CalibrationSession(id=row[0], name=row[1], created_by=row[2], created_at=row[3],
                                  call_ids=tuple(c[0] for c in calls))

    def add_calibration_scores(self, session_id: int, call_id: str, reviewer: str,
                               points: dict[str, float]) -> None:
        """Records one reviewer's points for the items of one call (a later score of the
        same item replaces the earlier one in the report; both are kept).

        Raises:
            WorkspaceError: The call is not in the session.
        """
        if call_id not in self.calibration(session_id).call_ids:
            raise WorkspaceError(f"call '{call_id}' is not in calibration session {session_id}")
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT INTO calibration_scores (session_id, call_id, rule_id,"
                           " reviewer, points, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           [(session_id, call_id, r, reviewer, float(p), now)
                            for r, p in points.items()])

    def calibration_scores(self, session_id: int) -> dict[tuple[str, str, str], float]:
        """The latest points of each (reviewer, call, item) in a session."""
        rows = self.read("SELECT reviewer, call_id, rule_id, points FROM calibration_scores"
                          " WHERE session_id = ? ORDER BY id", (session_id,))
        return {(r[0], r[1], r[2]): r[3] for r in rows}
