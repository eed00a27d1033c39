"""`qa serve --db postgresql://...`: the workspace on a real PostgreSQL server (a private one
in a temporary folder, `tests.pgserver`), over HTTP like a browser.

The store is the one the real pipeline filled for the SQLite tests (`seeded_db`), moved onto
the server by `qa db copy`; an account is made by `qa users add --db URL`, the others through
`Workspace` on the same URL. The key flows of the browser tests run against it: login per
role, search by an English and a Chinese phrase, an override and a label that end in the
store with their audit entries, a reviewer's view in the audit log, a dispute decided, a
calibration scored, the live floor, and an agent refused another agent's call (403, audited).
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.store import CallStore, StoreOptions
from qa.web.workspace import Workspace
from tests.pgserver import PASSWORD as PG_PASSWORD
from tests.web.conftest import (
    PASSWORD,
    USERS,
    Client,
    Served,
    audit_rows,
    qa,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def served_pg(seeded_db: Path, pg_server) -> Iterator[Served]:
    """`qa serve` over a PostgreSQL copy of the seeded store, with the users of `USERS`."""
    url = pg_server.database()
    done = qa("db", "copy", "--from", str(seeded_db), "--to", url, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    done = qa("users", "add", "ada", "--role", "admin", "--db", url, timeout=60,
              env={"QA_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr[-3000:]
    workspace = Workspace(url)
    for name, (role, agent) in USERS.items():
        if name != "ada":
            workspace.add_user(name, role, PASSWORD, agent_id=agent)
    workspace.close()
    with CallStore(StoreOptions(path=url)) as store:
        calls = {c.agent_id: c.call_id for c in store.calls()}
    proc, base = start_server(url)  # type: ignore[arg-type]
    try:
        yield Served(base, url, calls)  # type: ignore[arg-type]
    finally:
        stop_server(proc)
        assert proc.stderr is not None
        assert PG_PASSWORD not in proc.stderr.read()  # never logged


def _listed(page: str) -> list[str]:
    return re.findall(r'<tr data-call="([^"]+)"', page)


@pytest.mark.parametrize("username", ["ann", "rita", "sam", "ada"])
def test_login_per_role(served_pg: Served, username: str) -> None:
    client = Client(served_pg.url)
    status, headers, _ = client.login(username)
    assert status == 303 and headers["Location"] == "/calls"
    assert client.get("/calls")[0] == 200
    assert client.get("/audit")[0] == (200 if username == "ada" else 403)
    assert client.get("/live")[0] == (200 if username in ("sam", "ada") else 403)
    assert audit_rows(served_pg, username=username, action="login")
    assert Client(served_pg.url).login(username, "wrong-password")[0] == 401


@pytest.mark.parametrize(("phrase", "agent"), [("not my department", "agent-a"),
                                                ("Northwind Energy", "agent-a"),
                                                ("生气", "agent-b")])
def test_search_finds_a_call_by_an_english_or_chinese_phrase(
    served_pg: Served, phrase: str, agent: str
) -> None:
    client = Client(served_pg.url)
    client.login("rita")
    page = client.get("/calls?" + urllib.parse.urlencode({"q": phrase}))[2]
    assert _listed(page) == [served_pg.calls[agent]]
    snippet = re.search(rf'data-call="{served_pg.calls[agent]}">.*?<q class="snippet">'
                        r"(.*?)</q>", page, re.S).group(1)
    assert phrase.lower() in html.unescape(snippet).lower()
    for missing in ("purple elephant", "天气预报"):
        assert _listed(client.get("/calls?" + urllib.parse.urlencode({"q": missing}))[2]) == []


def test_override_ends_in_the_store_with_an_audit_entry(served_pg: Served) -> None:
    client = Client(served_pg.url)
    client.login("rita")
    call = served_pg.calls["agent-a"]
    status, headers, _ = client.post(f"/calls/{call}/override", {
        "rule": "closing", "points": "0", "reason": "closing cut short on pg"})
    assert status == 303, headers
    with served_pg.store() as store:
        done = store.call(call).overrides[-1]
    assert (done.rule_id, done.new_points, done.reviewer) == ("closing", 0.0, "rita")
    entry = audit_rows(served_pg, username="rita", action="override", call_id=call)[0]
    assert "closing cut short on pg" in entry.detail


def test_label_ends_in_the_store_with_an_audit_entry(served_pg: Served) -> None:
    client = Client(served_pg.url)
    client.login("ravi")
    call = served_pg.calls["agent-b"]
    status, _, _ = client.post(f"/calls/{call}/label", {
        "segment": "1", "rule": "apology", "verdict": "no", "reason": "not an apology"})
    assert status == 303
    with served_pg.store() as store:
        label = store.labels("apology")[-1]
        first = store.call(call).segments[0].text
    assert (label.call_id, label.segment, label.verdict, label.reviewer) == (
        call, 1, "no", "ravi")
    assert label.text == first
    assert audit_rows(served_pg, username="ravi", action="label", call_id=call)


def test_reviewer_view_is_in_the_audit_log(served_pg: Served) -> None:
    client = Client(served_pg.url)
    client.login("ravi")
    call = served_pg.calls["agent-b"]
    status, _, page = client.get(f"/calls/{call}")
    assert status == 200 and "Transcript" in page
    entry = audit_rows(served_pg, username="ravi", action="view_call")[0]
    assert entry.call_id == call and entry.address == "127.0.0.1"
    admin = Client(served_pg.url)
    admin.login("ada")
    page = admin.get("/audit?user=ravi&action=view_call")[2]
    assert f'data-action="view_call" data-user="ravi" data-call="{call}"' in page


def test_agent_gets_403_on_another_agents_call(served_pg: Served) -> None:
    client = Client(served_pg.url)
    client.login("ann")
    assert _listed(client.get("/calls?agent=agent-b")[2]) == [served_pg.calls["agent-a"]]
    other = served_pg.calls["agent-b"]
    assert client.get(f"/calls/{other}")[0] == 403
    assert client.get(f"/api/calls/{other}")[0] == 403
    assert client.get(f"/calls/{other}/audio")[0] == 403
    denied = audit_rows(served_pg, username="ann", action="view_call_denied")
    assert denied and denied[0].call_id == other
    # Her own call's recording plays (the store on the server names the file).
    own = served_pg.calls["agent-a"]
    status, headers, _ = client.request("GET", f"/calls/{own}/audio",
                                        headers={"Range": "bytes=0-99"})
    assert status == 206 and headers["Content-Type"] == "audio/flac"
    assert audit_rows(served_pg, username="ann", action="play_recording", call_id=own)


def test_dispute_opened_by_the_agent_and_decided_by_a_reviewer(served_pg: Served) -> None:
    call = served_pg.calls["agent-a"]
    agent = Client(served_pg.url)
    agent.login("ann")
    status, _, _ = agent.post(f"/calls/{call}/disputes",
                              {"rule": "greeting", "comment": "I did greet"})
    assert status == 303
    workspace = served_pg.workspace()
    try:
        dispute = workspace.disputes(call_id=call)[0]
        assert (dispute.state, dispute.opened_by) == ("open", "ann")
        reviewer = Client(served_pg.url)
        reviewer.login("rita")
        assert reviewer.post(f"/disputes/{dispute.id}/decide",
                             {"state": "rejected", "comment": "no greeting heard"})[0] == 303
        assert workspace.dispute(dispute.id).state == "rejected"
    finally:
        workspace.close()
    assert audit_rows(served_pg, username="rita", action="dispute_decide", call_id=call)


def test_calibration_scored_blind_and_reported(served_pg: Served) -> None:
    calls = sorted(served_pg.calls.values(), reverse=True)
    supervisor = Client(served_pg.url)
    supervisor.login("sam")
    status, headers, _ = supervisor.post("/calibration", {"name": "pg week",
                                                          "calls": " ".join(calls)})
    assert status == 303
    session = int(headers["Location"].rsplit("/", 1)[1])
    workspace = served_pg.workspace()
    try:
        assert workspace.calibration(session).call_ids == tuple(calls)  # as listed
    finally:
        workspace.close()
    with served_pg.store() as store:
        items = store.call(calls[0]).scorecard.items
    reviewer = Client(served_pg.url)
    reviewer.login("rita")
    path = f"/calibration/{session}/calls/{calls[0]}"
    assert reviewer.get(path)[0] == 200
    status, _, _ = reviewer.post(path, {f"points:{i.rule_id}": str(i.points_possible)
                                        for i in items})
    assert status == 303
    assert supervisor.get(f"/calibration/{session}/report")[0] == 200
    assert audit_rows(served_pg, username="rita", action="calibration_score")


def test_live_floor_shows_a_call_in_progress(served_pg: Served) -> None:
    """A call another node is storing (started, not ended) is on the floor with its
    latest segment's time and events; once it ends it leaves."""
    import json
    import time

    from qa.types import CallInfo, Event, EventKind, Segment, Severity, Speaker

    call = "live-pg-0001"
    with served_pg.store() as store:
        store.start_call(CallInfo(call, "agent-a", "rtp", time.time(),
                                  (Speaker.AGENT, Speaker.CUSTOMER), 8000))
        store.add_segment(Segment(call, Speaker.CUSTOMER, 1.0, 4.5, " I want a refund now.",
                                  language="en"))
        store.add_event(Event(call, 4.0, EventKind.FORBIDDEN_PHRASE, "shirk",
                              Severity.CRITICAL, -10.0, "refund", "", Speaker.AGENT))
    client = Client(served_pg.url)
    client.login("sam")
    status, _, body = client.get("/api/live")
    assert status == 200
    live = {c["call_id"]: c for c in json.loads(body)["calls"]}
    assert live[call]["audio_time"] == 4.5
    assert [e["rule"] for e in live[call]["events"]] == ["shirk"]
    status, _, body = client.get(f"/api/calls/{call}")
    assert status == 200 and "I want a refund now." in body
    with served_pg.store() as store:
        store.end_call(call, duration=5.0, category="complaint", reason="hangup")
    assert call not in {c["call_id"] for c in json.loads(client.get("/api/live")[2])["calls"]}
