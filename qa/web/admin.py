"""User administration in the browser (admins) and a user's own password change.

Admins list the accounts, add one with a role, disable and enable them and reset a password;
a reset password must be changed by its user at the next login (every page but the password
form, the logout and the static files answers with the form until then). Every action is a
CSRF-protected POST (checked by the application's middleware) and goes to the audit log;
anyone but an admin gets 403.

The queries this needs (`set_password`, `require_change`, `must_change`) are small functions
over the workspace's backend connection, in the portable SQL of `qa.web.workspace`: they run
on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from qa.errors import WorkspaceError
from qa.web import app as pages
from qa.web.workspace import _HASHER, Workspace

__all__ = ["add_routes", "must_change", "require_change", "set_password"]

log = logging.getLogger("qa.web.admin")

#: Paths a user who must change their password may still reach.
_OPEN_PATHS = ("/password", "/logout", "/login")


def set_password(workspace: Workspace, username: str, password: str, *,
                 must_change: bool, end_sessions: bool) -> None:
    """Sets a user's password (argon2id, like `Workspace.add_user`).

    Args:
        workspace: The workspace tables.
        username: Whose.
        password: At least `AccountOptions.min_password` characters.
        must_change: The user must choose a new one at the next login (an admin's reset).
        end_sessions: Log the user out everywhere (a reset: whoever knew the old one is out).

    Raises:
        WorkspaceError: No such user, or the password is too short.
    """
    if len(password) < workspace.accounts.min_password:
        raise WorkspaceError(
            f"password too short: at least {workspace.accounts.min_password} characters")
    digest = _HASHER.hash(password)
    with workspace.transaction() as db:
        cur = db.execute("UPDATE users SET password_hash = ?, must_change = ?, failed_logins = 0,"
                         " locked_until = 0 WHERE username = ?",
                         (digest, int(must_change), username))
        if cur.rowcount == 0:
            raise WorkspaceError(f"no user '{username}'")
        if end_sessions:
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))


def require_change(workspace: Workspace, username: str) -> None:
    """The user must choose a new password at the next login (an account an admin made)."""
    with workspace.transaction() as db:
        db.execute("UPDATE users SET must_change = 1 WHERE username = ?", (username,))


def must_change(workspace: Workspace, username: str) -> bool:
    """True when the user must change their password before anything else."""
    rows = workspace.read("SELECT must_change FROM users WHERE username = ?", (username,))
    return bool(rows and rows[0][0])


@web.middleware
async def _password_first(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    session = request.get(pages.SESSION)
    if session is None or request.path.startswith(_OPEN_PATHS + ("/static/",)):
        return await handler(request)
    if await asyncio.to_thread(must_change, pages._ctx(request).workspace,
                               session.user.username):
        if request.method == "GET" and not request.path.startswith("/api/"):
            raise web.HTTPSeeOther("/password")
        raise web.HTTPForbidden(text="403: change your password first (/password)")
    return await handler(request)


def _admin(request: web.Request):
    return pages._require(request, "audit")  # the admin's capability


async def add_user(request: web.Request) -> web.Response:
    _admin(request)
    form = await request.post()
    username = str(form.get("username", "")).strip()
    role = str(form.get("role", ""))
    agent_id = str(form.get("agent_id", "")).strip()
    try:
        await asyncio.to_thread(pages._ctx(request).workspace.add_user, username, role,
                                str(form.get("password", "")), agent_id=agent_id)
        require_change(pages._ctx(request).workspace, username)
    except WorkspaceError as exc:
        return pages._error(request, f"user not added: {exc}")
    pages._audit(request, "user_add", detail=f"{username} as {role}"
                 + (f" (agent id {agent_id})" if agent_id else ""))
    raise web.HTTPSeeOther("/users")


def _target(request: web.Request) -> str:
    username = request.match_info["username"]
    if pages._ctx(request).workspace.user(username) is None:
        raise web.HTTPNotFound(text=f"404: no user '{username}'")
    return username


async def disable_user(request: web.Request) -> web.Response:
    _admin(request)
    username = _target(request)
    if username == pages._session(request).user.username:
        return pages._error(request, "you cannot disable your own account")
    pages._ctx(request).workspace.set_disabled(username, True)
    pages._audit(request, "user_disable", detail=username)
    raise web.HTTPSeeOther("/users")


async def enable_user(request: web.Request) -> web.Response:
    _admin(request)
    username = _target(request)
    pages._ctx(request).workspace.set_disabled(username, False)
    pages._audit(request, "user_enable", detail=username)
    raise web.HTTPSeeOther("/users")


async def reset_password(request: web.Request) -> web.Response:
    _admin(request)
    username = _target(request)
    form = await request.post()
    try:
        await asyncio.to_thread(set_password, pages._ctx(request).workspace, username,
                                str(form.get("password", "")), must_change=True,
                                end_sessions=True)
    except WorkspaceError as exc:
        return pages._error(request, f"password not reset: {exc}")
    pages._audit(request, "user_password_reset", detail=f"{username} (must change at login)")
    raise web.HTTPSeeOther("/users")


async def password_page(request: web.Request) -> web.Response:
    user = pages._session(request).user
    forced = await asyncio.to_thread(must_change, pages._ctx(request).workspace, user.username)
    return pages._render(request, "password.html", forced=forced, message="")


async def change_password(request: web.Request) -> web.Response:
    ctx = pages._ctx(request)
    user = pages._session(request).user
    form = await request.post()
    new = str(form.get("new", ""))
    forced = await asyncio.to_thread(must_change, ctx.workspace, user.username)
    try:
        if new != str(form.get("again", "")):
            raise WorkspaceError("the two new passwords differ")
        # The current password again: a session left open is not enough to take the account.
        await asyncio.to_thread(ctx.workspace.authenticate, user.username,
                                str(form.get("current", "")))
        if new == str(form.get("current", "")):
            raise WorkspaceError("choose a password other than the current one")
        await asyncio.to_thread(set_password, ctx.workspace, user.username, new,
                                must_change=False, end_sessions=False)
    except WorkspaceError as exc:
        return pages._render(request, "password.html", status=400, forced=forced,
                             message=str(exc))
    pages._audit(request, "password_change", detail=user.username)
    raise web.HTTPSeeOther("/calls")


def add_routes(app: web.Application) -> None:
    """Adds the user administration and the password form, and the check that sends a user
    who must change their password to the form first."""
    app.middlewares.append(_password_first)
    app.add_routes([
        web.post("/users", add_user),
        web.post("/users/{username}/disable", disable_user),
        web.post("/users/{username}/enable", enable_user),
        web.post("/users/{username}/password", reset_password),
        web.get("/password", password_page), web.post("/password", change_password),
    ])
