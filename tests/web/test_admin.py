"""User administration over HTTP against a real `qa serve`: admins add, disable, enable and
reset; every action needs the CSRF token and lands in the audit log; others get 403; a reset
(or a new account's first) password must be changed before anything else."""

from __future__ import annotations

import random
import re
import string

import pytest

from tests.web.conftest import PASSWORD, Client, Served, audit_rows

NEW_PASSWORD = "a-brand-new-secret"


def _name(prefix: str) -> str:
    # Letters only: the audit log redacts runs of digits in its details.
    return prefix + "".join(random.choices(string.ascii_lowercase, k=10))


def _admin(served: Served) -> Client:
    ada = Client(served.url)
    ada.login("ada")
    assert ada.get("/users")[0] == 200  # and its CSRF token
    return ada


def _state(client: Client, username: str) -> str:
    page = client.get("/users")[2]
    found = re.search(rf'data-user="{re.escape(username)}">.*?<td class="state">(\w+)</td>',
                      page, re.S)
    return found.group(1) if found else ""


def _user(served: Served, username: str):
    workspace = served.workspace()
    try:
        return workspace.user(username)
    finally:
        workspace.close()


@pytest.mark.parametrize("username", ["ann", "rita", "sam"])
def test_non_admins_get_403_and_change_nothing(served: Served, username: str) -> None:
    client = Client(served.url)
    client.login(username)
    target = _name("victim")
    assert client.get("/users")[0] == 403
    assert client.post("/users", {"username": target, "role": "admin",
                                  "password": PASSWORD})[0] == 403
    assert client.post("/users/rita/disable", {})[0] == 403
    assert client.post("/users/rita/password", {"password": "taken-over-now"})[0] == 403
    assert _user(served, target) is None
    assert not _user(served, "rita").disabled
    assert Client(served.url).login("rita")[0] == 303  # her password still works


def test_every_admin_action_needs_the_csrf_token(served: Served) -> None:
    ada = _admin(served)
    target = _name("nocsrf")
    assert ada.post("/users", {"username": target, "role": "reviewer", "password": PASSWORD},
                    csrf=False)[0] == 403
    assert ada.post("/users/ravi/disable", {}, csrf=False)[0] == 403
    assert ada.post("/users/ravi/password", {"password": "whatever-it-is"}, csrf=False)[0] == 403
    assert _user(served, target) is None and not _user(served, "ravi").disabled


def test_admin_adds_a_user_who_must_choose_a_password_first(served: Served) -> None:
    ada = _admin(served)
    name = _name("newrev")
    status, headers, _ = ada.post("/users", {"username": name, "role": "reviewer",
                                             "agent_id": "", "password": PASSWORD})
    assert status == 303 and headers["Location"] == "/users"
    assert _state(ada, name) == "active"
    assert _user(served, name).role == "reviewer"
    entry = audit_rows(served, username="ada", action="user_add")[0]
    assert entry.detail == f"{name} as reviewer"
    # A bad role or a short password is refused with the reason, nothing stored.
    assert ada.post("/users", {"username": _name("x"), "role": "root",
                               "password": PASSWORD})[0] == 400
    assert "too short" in ada.post("/users", {"username": _name("x"), "role": "agent",
                                              "agent_id": "a-9", "password": "short"})[2]

    newbie = Client(served.url)
    assert newbie.login(name)[0] == 303
    # Every page sends them to the password form; the API and streams refuse.
    status, headers, _ = newbie.get("/calls")
    assert status == 303 and headers["Location"] == "/password"
    assert newbie.get("/api/live")[0] == 403
    status, _, page = newbie.get("/password")
    assert status == 200 and 'id="forced"' in page
    bad = newbie.post("/password", {"current": PASSWORD, "new": NEW_PASSWORD, "again": "nope"})
    assert bad[0] == 400 and "differ" in bad[2]
    assert newbie.post("/password", {"current": PASSWORD, "new": NEW_PASSWORD,
                                     "again": NEW_PASSWORD})[0] == 303
    assert newbie.get("/calls")[0] == 200
    assert audit_rows(served, username=name, action="password_change")
    assert Client(served.url).login(name, NEW_PASSWORD)[0] == 303


def test_disable_ends_sessions_and_enable_lets_the_user_back(served: Served) -> None:
    ada = _admin(served)
    name = _name("dis")
    workspace = served.workspace()
    workspace.add_user(name, "reviewer", PASSWORD)
    workspace.close()
    them = Client(served.url)
    them.login(name)
    assert them.get("/calls")[0] == 200
    assert ada.post(f"/users/{name}/disable", {})[0] == 303
    assert _state(ada, name) == "disabled"
    assert them.get("/calls")[0] == 303  # back to the login page: the session is gone
    assert Client(served.url).login(name)[0] == 401
    assert ada.post(f"/users/{name}/enable", {})[0] == 303
    assert _state(ada, name) == "active"
    assert Client(served.url).login(name)[0] == 303
    assert audit_rows(served, username="ada", action="user_disable")[0].detail == name
    assert audit_rows(served, username="ada", action="user_enable")[0].detail == name
    # An admin cannot lock themselves out by accident.
    assert ada.post("/users/ada/disable", {})[0] == 400 and not _user(served, "ada").disabled
    assert ada.post("/users/nobody-at-all/disable", {})[0] == 404


def test_reset_password_logs_the_user_out_and_forces_a_change(served: Served) -> None:
    ada = _admin(served)
    name = _name("reset")
    workspace = served.workspace()
    workspace.add_user(name, "supervisor", PASSWORD)
    workspace.close()
    them = Client(served.url)
    them.login(name)
    assert ada.post(f"/users/{name}/password", {"password": "short"})[0] == 400
    assert ada.post(f"/users/{name}/password", {"password": "temporary-secret"})[0] == 303
    assert them.get("/calls")[0] == 303  # logged out everywhere
    assert Client(served.url).login(name)[0] == 401  # the old password is gone
    again = Client(served.url)
    assert again.login(name, "temporary-secret")[0] == 303
    status, headers, _ = again.get("/live")
    assert status == 303 and headers["Location"] == "/password"
    assert again.get("/password")[0] == 200  # the form, with the session's CSRF token
    assert again.post("/password", {"current": "temporary-secret", "new": NEW_PASSWORD,
                                    "again": NEW_PASSWORD})[0] == 303
    assert again.get("/live")[0] == 200
    entry = audit_rows(served, username="ada", action="user_password_reset")[0]
    assert entry.detail == f"{name} (must change at login)"
    assert "temporary" not in entry.detail
