"""`qa serve` over HTTP: a real server process on a free port, the store the real pipeline
filled, requests made like a browser's (cookies, forms with CSRF tokens)."""

from __future__ import annotations

import html
import re
import sqlite3
import ssl
import subprocess
import urllib.parse

import pytest

from tests.web.conftest import Client, Served, audit_rows, qa, start_server, stop_server


def _calls_listed(page: str, seeded: Served | None = None) -> list[str]:
    """The calls a list page shows (only the two seeded ones, when `seeded` is given: other
    tests add calls of their own)."""
    found = re.findall(r'<tr data-call="([^"]+)"', page)
    return [c for c in found if seeded is None or c in seeded.calls.values()]


@pytest.mark.parametrize("username", ["ann", "rita", "sam", "ada"])
def test_login_per_role_sets_a_strict_http_only_session(served: Served, username: str) -> None:
    client = Client(served.url)
    status, headers, _ = client.login(username)
    assert status == 303 and headers["Location"] == "/calls"
    cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie"
                  and v.startswith("qa_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    status, _, page = client.get("/calls")
    assert status == 200
    assert f"{username} (" in page
    # The menu shows what the role may open, and the server agrees.
    expected = {"ann": 403, "rita": 403, "sam": 403, "ada": 200}[username]
    assert client.get("/audit")[0] == expected
    assert client.get("/live")[0] == (200 if username in ("sam", "ada") else 403)
    assert client.get("/users")[0] == expected
    assert audit_rows(served, username=username, action="login")


def test_wrong_password_is_refused_and_repeated_failures_lock_the_account(
    served: Served,
) -> None:
    workspace = served.workspace()
    workspace.add_user("locky", "reviewer", "a-good-password")
    workspace.close()
    client = Client(served.url)
    for _ in range(5):
        status, _, page = client.login("locky", "wrong-password")
        assert status == 401 and "invalid username or password" in page
    # Locked now: even the right password is refused.
    status, _, page = client.login("locky", "a-good-password")
    assert status == 401 and "locked" in page
    failures = audit_rows(served, username="locky", action="login_failed")
    assert len(failures) == 6
    admin = Client(served.url)
    admin.login("ada")
    page = admin.get("/users")[2]
    assert re.search(r'data-user="locky">.*?<td class="state">locked</td>', page, re.S)


def test_login_form_survives_a_second_load_of_the_page(served: Served) -> None:
    # A reload (or a browser's second fetch) of the login page must not orphan the form the
    # user is typing into: the token stays the browser's until it logs in.
    client = Client(served.url)
    first = re.search(r'name="csrf" value="([^"]+)"', client.get("/login")[2]).group(1)
    client.get("/login")
    status, _, _ = client.request("POST", "/login", {"csrf": first, "username": "rita",
                                                     "password": "correct-horse-battery"})
    assert status == 303


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(served: Served) -> None:
    status, _, page = Client(served.url).login("nobody-here", "whatever-it-is")
    assert status == 401 and "invalid username or password" in page


def test_pages_need_a_session(served: Served) -> None:
    client = Client(served.url)
    status, headers, _ = client.get("/calls")
    assert status == 303 and headers["Location"] == "/login"
    assert client.get("/api/live")[0] == 401


def test_post_without_the_csrf_token_is_refused(served: Served) -> None:
    client = Client(served.url)
    client.login("rita")
    call = served.calls["agent-a"]
    with served.store() as store:
        before = store.call(call).overrides
    status, _, _ = client.post(f"/calls/{call}/override",
                               {"rule": "closing", "points": "0", "reason": "x"}, csrf=False)
    assert status == 403
    status, _, _ = client.request("POST", f"/calls/{call}/override", {
        "csrf": "forged", "rule": "closing", "points": "0", "reason": "x"})
    assert status == 403
    with served.store() as store:
        assert store.call(call).overrides == before


@pytest.mark.parametrize("path", ["/calls/{call}/override", "/calls/{call}/label",
                                  "/calls/{call}/disputes", "/disputes/1/decide", "/calibration",
                                  "/calibration/1/calls/{call}", "/logout"])
def test_every_post_needs_the_csrf_token(served: Served, path: str) -> None:
    client = Client(served.url)
    client.login("ada")
    before = audit_rows(served)[0].id
    status, _, page = client.post(path.format(call=served.calls["agent-a"]), {}, csrf=False)
    assert status == 403 and "CSRF" in page
    assert audit_rows(served)[0].id == before  # nothing happened
    assert client.get("/calls")[0] == 200  # and the session is still there


def test_login_form_without_its_token_is_refused(served: Served) -> None:
    status, _, _ = Client(served.url).request(
        "POST", "/login", {"username": "rita", "password": "correct-horse-battery"})
    assert status == 403


def test_agent_sees_only_own_calls_and_gets_403_on_another_agents_call(
    served: Served,
) -> None:
    client = Client(served.url)
    client.login("ann")
    status, _, page = client.get("/calls")
    assert _calls_listed(page) == [served.calls["agent-a"]]
    # Naming another agent in the address changes nothing.
    assert _calls_listed(client.get("/calls?agent=agent-b")[2]) == [served.calls["agent-a"]]
    other = served.calls["agent-b"]
    assert client.get(f"/calls/{other}")[0] == 403
    assert client.get(f"/api/calls/{other}")[0] == 403
    assert client.get(f"/calls/{other}/audio")[0] == 403
    assert client.get(f"/calls/{served.calls['agent-a']}")[0] == 200
    denied = audit_rows(served, username="ann", action="view_call_denied")
    assert denied and denied[0].call_id == other


def test_reading_a_call_as_json_is_audited_once_while_following_it(served: Served) -> None:
    client = Client(served.url)
    client.login("ravi")
    call = served.calls["agent-a"]
    for _ in range(3):  # a page following a live call polls
        status, _, body = client.get(f"/api/calls/{call}")
        assert status == 200 and '"segments"' in body
    reads = [e for e in audit_rows(served, username="ravi", action="view_call", call_id=call)
             if e.detail == "live transcript"]
    assert len(reads) == 1


def test_reviewer_view_is_in_the_audit_log(served: Served) -> None:
    client = Client(served.url)
    client.login("ravi")
    call = served.calls["agent-b"]
    status, _, page = client.get(f"/calls/{call}")
    assert status == 200 and "Transcript" in page
    entry = audit_rows(served, username="ravi", action="view_call")[0]
    assert entry.call_id == call and entry.address == "127.0.0.1"
    # The admin reads it in the app.
    admin = Client(served.url)
    admin.login("ada")
    page = admin.get("/audit?user=ravi&action=view_call")[2]
    assert f'data-action="view_call" data-user="ravi" data-call="{call}"' in page


@pytest.mark.parametrize(("phrase", "agent"), [("not my department", "agent-a"),
                                                ("生气", "agent-b"),
                                                ("Northwind Energy", "agent-a")])
def test_search_finds_a_call_by_an_english_or_chinese_phrase(
    served: Served, phrase: str, agent: str
) -> None:
    client = Client(served.url)
    client.login("rita")
    page = client.get("/calls?" + urllib.parse.urlencode({"q": phrase}))[2]
    assert _calls_listed(page, served) == [served.calls[agent]]
    # The row quotes the line that matched.
    snippet = re.search(rf'data-call="{served.calls[agent]}">.*?<q class="snippet">(.*?)</q>',
                        page, re.S).group(1)
    assert phrase.lower() in html.unescape(snippet).lower()


def test_search_misses_text_the_calls_do_not_say(served: Served) -> None:
    client = Client(served.url)
    client.login("rita")
    for phrase in ("purple elephant", "天气预报"):
        assert _calls_listed(client.get("/calls?" + urllib.parse.urlencode(
            {"q": phrase}))[2], served) == []


def test_filters(served: Served) -> None:
    client = Client(served.url)
    client.login("rita")
    en, zh = served.calls["agent-a"], served.calls["agent-b"]

    def listed(**query: str) -> set[str]:
        return set(_calls_listed(client.get("/calls?" + urllib.parse.urlencode(query))[2],
                                 served))

    assert listed(agent="agent-b") == {zh}
    assert listed(rule="shirk") == {en}  # only the English call says "not my department"
    assert listed(category="complaint") == {en, zh}
    with served.store() as store:
        totals = {c.call_id: c.total for c in store.calls() if c.call_id in (en, zh)}
    low = min(totals.values())
    assert listed(max=str(low)) == {c for c, t in totals.items() if t <= low}
    assert listed(since="2000-01-01") == {en, zh}
    assert listed(until="2000-01-01") == set()
    assert client.get("/calls?since=yesterday")[0] == 400


def test_recording_is_served_in_ranges_and_a_play_is_audited_once(served: Served) -> None:
    call = served.calls["agent-a"]
    with served.store() as store:
        recording = store.recording(call)
    assert recording is not None, "the pipeline kept no recording"
    client = Client(served.url)
    client.login("sam")
    before = len(audit_rows(served, username="sam", action="play_recording", call_id=call))
    status, headers, _ = client.request("GET", f"/calls/{call}/audio",
                                        headers={"Range": "bytes=0-"})
    assert status == 206 and headers["Content-Type"] == "audio/flac"
    # A seek asks for a later range: the same play, not another audit entry.
    status, headers, _ = client.request("GET", f"/calls/{call}/audio",
                                        headers={"Range": "bytes=1000-1999"})
    assert status == 206 and headers["Content-Range"].startswith("bytes 1000-1999/")
    after = audit_rows(served, username="sam", action="play_recording", call_id=call)
    assert len(after) == before + 1


def test_export_is_audited_and_agents_may_not_export(served: Served) -> None:
    client = Client(served.url)
    client.login("sam")
    status, headers, body = client.get("/calls.csv?agent=agent-a")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert served.calls["agent-a"] in body and served.calls["agent-b"] not in body
    assert audit_rows(served, username="sam", action="export")
    agent = Client(served.url)
    agent.login("bo")
    assert agent.get("/calls.csv")[0] == 403


def test_security_headers(served: Served) -> None:
    client = Client(served.url)
    _, headers, _ = client.get("/login")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_logout_ends_the_session(served: Served) -> None:
    client = Client(served.url)
    client.login("rita")
    token = next(c.value for c in client.jar if c.name == "qa_session")
    assert client.post("/logout", {})[0] == 303
    replay = Client(served.url)
    status, _, _ = replay.request("GET", "/calls", headers={"Cookie": f"qa_session={token}"})
    assert status == 303  # back to the login page: the token is dead


def test_audit_log_cannot_be_edited(served: Served) -> None:
    db = sqlite3.connect(served.db)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit SET username = 'someone-else'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit")
    finally:
        db.close()


def test_serves_https_with_a_certificate(served: Served, tmp_path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    proc, url = start_server(served.db, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        client = Client(url, context)
        status, headers, _ = client.login("rita")
        assert status == 303
        cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie"
                      and v.startswith("qa_session="))
        assert "Secure" in cookie
        assert client.get("/calls")[0] == 200
    finally:
        stop_server(proc)


def test_bad_tls_options_and_a_taken_port_are_one_line_errors(served: Served,
                                                              tmp_path) -> None:
    half = qa("serve", "--db", str(served.db), "--port", "0", "--tls-cert",
              str(tmp_path / "cert.pem"), timeout=60)
    assert half.returncode == 2
    assert half.stderr.strip() == "qa: error: TLS needs both --tls-cert and --tls-key"
    port = served.url.rsplit(":", 1)[1]
    taken = qa("serve", "--db", str(served.db), "--port", port, timeout=60)
    assert taken.returncode == 2
    assert taken.stderr.strip().startswith(f"qa: error: cannot listen on 127.0.0.1:{port}")


def test_listens_on_the_loopback_by_default(served: Served) -> None:
    assert served.url.startswith("http://127.0.0.1:")
