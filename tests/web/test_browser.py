"""The workspace in a real headless Chromium (Debian's `chromium`, driven over CDP), against a
real `qa serve` over calls the real pipeline stored: every flow ends in the store, with its
audit entries."""

from __future__ import annotations

import json
import os
import random
import string
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.types import CallInfo, Event, EventKind, Severity, Speaker
from tests.prompts.cdp import Browser
from tests.web.conftest import PASSWORD, Served, audit_rows, wait_until

#: Where the screenshots go (the README's pictures of the call page and the live floor).
SHOTS = Path(os.environ.get("QA_SCREENSHOTS", "/tmp"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser()
    try:
        yield chromium
    finally:
        chromium.close()


def _js(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def login(browser: Browser, served: Served, username: str) -> None:
    browser.call("Network.clearBrowserCookies")
    browser.navigate(served.url + "/login")
    browser.evaluate(
        f"document.getElementById('username').value = {_js(username)};"
        f"document.getElementById('password').value = {_js(PASSWORD)};"
        "document.getElementById('login').requestSubmit()")
    browser.wait_for("location.pathname === '/calls' && document.readyState === 'complete'"
                     " && !!document.getElementById('who')", 15)


def submit(browser: Browser, selector: str, values: dict[str, str], path: str) -> None:
    """Fills the inputs of the form `selector` by name, submits it, and waits for a new page
    whose path starts with `path`."""
    browser.evaluate(
        f"(() => {{ const f = document.querySelector({_js(selector)});"
        f" for (const [k, v] of Object.entries({_js(values)})) f.elements[k].value = v;"
        " window.__old = true; f.requestSubmit(); })()")
    browser.wait_for(f"!window.__old && location.pathname.startsWith({_js(path)})"
                     " && document.readyState === 'complete'", 15)


def open_page(browser: Browser, served: Served, path: str) -> None:
    browser.navigate(served.url + path)


def rows(browser: Browser, selector: str, attribute: str) -> list[str]:
    return browser.evaluate(
        f"[...document.querySelectorAll({_js(selector)})].map(e => e.getAttribute("
        f"{_js(attribute)}))")


@pytest.mark.parametrize(("username", "menu"), [
    ("ann", ["Calls", "Disputes"]),
    ("rita", ["Calls", "Disputes", "Calibration"]),
    ("sam", ["Calls", "Disputes", "Calibration", "Live floor"]),
    ("ada", ["Calls", "Disputes", "Calibration", "Live floor", "Audit log", "Users"]),
])
def test_log_in_per_role(browser: Browser, served: Served, username: str,
                         menu: list[str]) -> None:
    login(browser, served, username)
    assert browser.evaluate("[...document.querySelectorAll('header nav a')]"
                            ".map(a => a.textContent)") == menu
    listed = rows(browser, "#calls tbody tr[data-call]", "data-call")
    if username == "ann":
        assert listed == [served.calls["agent-a"]]  # an agent sees their own calls only
    else:
        assert set(served.calls.values()) <= set(listed)
    # The session cookie is out of the page's reach.
    assert "qa_session" not in browser.evaluate("document.cookie")


@pytest.mark.parametrize(("phrase", "agent"), [("not my department", "agent-a"),
                                                ("生气", "agent-b")])
def test_search_finds_a_call_by_an_english_and_a_chinese_phrase(
    browser: Browser, served: Served, phrase: str, agent: str
) -> None:
    login(browser, served, "rita")
    submit(browser, "#filters", {"q": phrase}, "/calls")
    listed = rows(browser, "#calls tbody tr[data-call]", "data-call")
    assert [c for c in listed if c in served.calls.values()] == [served.calls[agent]]


def test_clicking_an_event_plays_from_two_seconds_before_it(
    browser: Browser, served: Served
) -> None:
    call = served.calls["agent-a"]
    with served.store() as store:
        event = next(e for e in store.call(call).events if e.rule_id == "shirk")
        assert store.recording(call) is not None, "the pipeline kept no recording"
    login(browser, served, "rita")
    open_page(browser, served, f"/calls/{call}")
    assert browser.evaluate("document.getElementById('player').readyState") == 0  # not fetched
    assert not audit_rows(served, username="rita", action="play_recording", call_id=call)
    browser.evaluate(f"document.querySelector('#events button.seek[data-time=\"{event.time}\"]')"
                     ".click()")
    browser.wait_for("(() => { const p = document.getElementById('player');"
                     " return p.readyState >= 1 && !p.seeking && p.currentTime > 0; })()", 15)
    now = browser.evaluate("document.getElementById('player').currentTime")
    # Playing may have moved on a little since the seek; it started at event time - 2 s.
    assert event.time - 2.0 - 0.05 <= now <= event.time - 2.0 + 1.0, (event.time, now)
    assert browser.evaluate("document.getElementById('player').duration") > event.time
    assert wait_until(lambda: audit_rows(served, username="rita", action="play_recording",
                                         call_id=call))
    browser.screenshot(SHOTS / "workspace_call.png")


def test_override_ends_in_the_store_with_an_audit_entry(browser: Browser, served: Served) -> None:
    call = served.calls["agent-b"]
    login(browser, served, "rita")
    open_page(browser, served, f"/calls/{call}")
    before = browser.evaluate("document.getElementById('score').textContent")
    submit(browser, "tr[data-rule='closing'] form.override",
           {"points": "4", "reason": "closing was rushed"}, f"/calls/{call}")
    with served.store() as store:
        record = store.call(call)
    done = record.overrides[-1]
    assert (done.rule_id, done.new_points, done.reviewer, done.reason) == (
        "closing", 4.0, "rita", "closing was rushed")
    assert float(browser.evaluate("document.getElementById('score').textContent")) == (
        record.effective.total) != float(before)
    entry = audit_rows(served, username="rita", action="override", call_id=call)[0]
    assert entry.detail.startswith("closing: 10 -> 4")


def test_label_ends_in_the_store_with_an_audit_entry(browser: Browser, served: Served) -> None:
    call = served.calls["agent-a"]
    login(browser, served, "ravi")
    open_page(browser, served, f"/calls/{call}")
    first = browser.evaluate("document.querySelector('li.seg[data-n=\"1\"] .text').textContent")
    submit(browser, "#label-form", {"segment": "1", "rule": "greeting", "verdict": "yes",
                                    "reason": "a textbook greeting"}, f"/calls/{call}")
    with served.store() as store:
        label = store.labels("greeting")[-1]
    assert (label.call_id, label.segment, label.verdict, label.reviewer, label.text) == (
        call, 1, "yes", "ravi", first)
    assert audit_rows(served, username="ravi", action="label", call_id=call)


def test_dispute_opened_by_the_agent_and_accepted_by_a_reviewer(
    browser: Browser, served: Served
) -> None:
    call = served.calls["agent-a"]
    login(browser, served, "ann")
    open_page(browser, served, f"/calls/{call}")
    submit(browser, "tr[data-rule='shirk'] form.dispute",
           {"comment": "I transferred the caller to billing"}, f"/calls/{call}")
    state = browser.evaluate("document.querySelector('#disputes li[data-dispute]').dataset.state")
    assert state == "open"
    workspace = served.workspace()
    try:
        dispute = workspace.disputes(call_id=call)[0]
        assert (dispute.rule_id, dispute.opened_by, dispute.state) == ("shirk", "ann", "open")

        login(browser, served, "rita")
        open_page(browser, served, "/disputes")
        submit(browser, f"tr[data-dispute='{dispute.id}'] form.decide",
               {"state": "accepted", "points": "10", "comment": "the transfer was right"},
               "/disputes")
        assert browser.evaluate(f"document.querySelector('tr[data-dispute=\"{dispute.id}\"]')"
                                ".dataset.state") == "accepted"
        decided = workspace.dispute(dispute.id)
        assert (decided.state, decided.decided_by) == ("accepted", "rita")
    finally:
        workspace.close()
    with served.store() as store:
        override = store.call(call).overrides[-1]
    assert (override.rule_id, override.new_points, override.reviewer) == ("shirk", 10.0, "rita")
    assert f"dispute {dispute.id} accepted" in override.reason
    assert audit_rows(served, username="ann", action="dispute_open", call_id=call)
    assert audit_rows(served, username="rita", action="dispute_decide", call_id=call)


def test_calibration_blind_scores_and_agreement_report(browser: Browser, served: Served) -> None:
    en, zh = served.calls["agent-a"], served.calls["agent-b"]
    with served.store() as store:
        automatic = {c: {i.rule_id: i.points_awarded for i in store.call(c).scorecard.items}
                     for c in (en, zh)}
    login(browser, served, "sam")
    open_page(browser, served, "/calibration")
    submit(browser, "#new-session", {"name": "week 49", "calls": f"{en} {zh}"},
           "/calibration/")
    session_path = browser.evaluate("location.pathname")
    assert session_path.startswith("/calibration/")
    # Rita agrees with the scorer everywhere; Ravi gives the Chinese greeting 0.
    given = {"rita": automatic, "ravi": {en: automatic[en], zh: {**automatic[zh], "greeting": 0}}}
    for reviewer, scores in given.items():
        login(browser, served, reviewer)
        for call in (en, zh):
            open_page(browser, served, f"{session_path}/calls/{call}")
            page = browser.evaluate("document.querySelector('main').textContent")
            assert "auto" not in page and not browser.evaluate("!!document.getElementById("
                                                               "'events')")  # blind
            submit(browser, "#blind-score", {f"points:{r}": f"{p:g}"
                                             for r, p in scores[call].items()}, session_path)
    login(browser, served, "sam")
    open_page(browser, served, f"{session_path}/report")
    row = browser.evaluate("[...document.querySelectorAll('tr[data-rule=\"greeting\"] td')]"
                           ".slice(1).map(td => td.textContent)")
    assert automatic[en]["greeting"] == automatic[zh]["greeting"]  # what the numbers rely on
    # Between reviewers: equal on 1 of 2 calls; kappa (0.5 - 0.5) / (1 - 0.5) = 0.
    # Against the scorer: Rita 1.0 (kappa 1), Ravi 0.5 (kappa 0): means 0.75 and 0.50.
    assert row == ["2", "0.50", "0.00", "0.75", "0.50"]
    closing = browser.evaluate("[...document.querySelectorAll('tr[data-rule=\"closing\"] td')]"
                               ".slice(1).map(td => td.textContent)")
    assert closing == ["2", "1.00", "1.00", "1.00", "1.00"]
    workspace = served.workspace()
    try:
        session_id = int(session_path.rsplit("/", 1)[1])
        stored = workspace.calibration_scores(session_id)
    finally:
        workspace.close()
    assert stored[("ravi", zh, "greeting")] == 0 and stored[("rita", zh, "greeting")] == 15
    assert len(audit_rows(served, action="calibration_score")) >= 4
    # Sam closes the session: scoring ends, and the calls are no longer blind to anyone.
    open_page(browser, served, session_path)
    submit(browser, "#close-session", {}, session_path)
    assert browser.evaluate("!!document.getElementById('closed')")
    assert audit_rows(served, username="sam", action="calibration_close")


def test_agent_gets_403_on_another_agents_call(browser: Browser, served: Served) -> None:
    login(browser, served, "bo")
    other = served.calls["agent-a"]
    open_page(browser, served, f"/calls/{other}")
    assert "403" in browser.evaluate("document.body.textContent")
    assert other not in browser.evaluate("document.body.textContent").replace(
        "403: this is another agent's call", "")


def test_reviewer_view_appears_in_the_admins_audit_log(browser: Browser, served: Served) -> None:
    call = served.calls["agent-b"]
    login(browser, served, "ravi")
    open_page(browser, served, f"/calls/{call}")
    login(browser, served, "ada")
    open_page(browser, served, "/audit?user=ravi")
    found = browser.evaluate(
        "[...document.querySelectorAll('#audit tbody tr')].map(r => [r.dataset.action,"
        " r.dataset.call])")
    assert ["view_call", call] in found


def test_live_floor_shows_calls_in_progress_with_their_events(
    browser: Browser, served: Served
) -> None:
    source = served.calls["agent-a"]
    live = f"live-{time.time_ns()}"
    with served.store() as store:
        segments = store.call(source).segments
        store.start_call(CallInfo(live, "agent-live", "rtp:test", time.time(),
                                  (Speaker.AGENT, Speaker.CUSTOMER), 8000))
        for segment in segments[:3]:
            store.add_segment(segment.__class__(**{**_fields(segment), "call_id": live}))
        store.add_event(Event(live, 4.0, EventKind.STEP_DONE, "greeting", Severity.INFO, 15.0,
                              "Thank you for calling", "", Speaker.AGENT))
    try:
        login(browser, served, "sam")
        open_page(browser, served, "/live")
        browser.wait_for(f"!!document.querySelector('#floor li[data-call=\"{live}\"] .event')", 10)
        browser.evaluate("window.__same_page = true")
        with served.store() as store:
            store.add_event(Event(live, 30.0, EventKind.FORBIDDEN_PHRASE, "shirk",
                                  Severity.CRITICAL, -10.0, "not my department",
                                  "Do not shirk", Speaker.AGENT))
        # Pushed to the board: the new event appears without a reload, and no request polls.
        browser.wait_for(f"[...document.querySelectorAll('#floor li[data-call=\"{live}\"]"
                         " .rule')].map(e => e.textContent).includes('shirk')", 10)
        assert browser.evaluate("window.__same_page === true")
        assert _requests(browser) == []
        browser.screenshot(SHOTS / "workspace_live.png")
        # Open it from the board and follow its transcript as it grows.
        browser.evaluate(f"document.querySelector('#floor li[data-call=\"{live}\"] a').click()")
        browser.wait_for(f"location.pathname === '/calls/{live}'"
                         " && document.readyState === 'complete'", 10)
        assert browser.evaluate("document.querySelectorAll('#transcript li.seg').length") == 3
        browser.evaluate("window.__same_page = true")
        with served.store() as store:
            store.add_segment(segment.__class__(**{**_fields(segments[3]), "call_id": live}))
        # A segment written while the page is open appears without a reload, pushed.
        browser.wait_for("document.querySelectorAll('#transcript li.seg').length === 4", 10)
        assert browser.evaluate("window.__same_page === true")
        assert _requests(browser) == []
        assert browser.evaluate("document.querySelector('#transcript li.seg:last-child .text')"
                                ".textContent") == segments[3].text.strip()
    finally:
        with served.store() as store:
            store.end_call(live, duration=31.0, category=None, reason="hangup")


def test_admin_adds_a_user_who_chooses_a_password_at_first_login(
    browser: Browser, served: Served
) -> None:
    # Letters only: the audit log redacts runs of digits in its details.
    name = "newcomer" + "".join(random.choices(string.ascii_lowercase, k=8))
    login(browser, served, "ada")
    open_page(browser, served, "/users")
    submit(browser, "#add-user", {"username": name, "role": "reviewer",
                                  "password": "first-password-1"}, "/users")
    assert browser.evaluate(f"document.querySelector('tr[data-user=\"{name}\"] .state')"
                            ".textContent") == "active"
    assert audit_rows(served, username="ada", action="user_add")[0].detail == (
        f"{name} as reviewer")
    # The newcomer logs in and lands on the password form, whatever they ask for.
    browser.call("Network.clearBrowserCookies")
    browser.navigate(served.url + "/login")
    browser.evaluate(
        f"document.getElementById('username').value = {_js(name)};"
        "document.getElementById('password').value = 'first-password-1';"
        "document.getElementById('login').requestSubmit()")
    browser.wait_for("location.pathname === '/password' && document.readyState === 'complete'",
                     15)
    assert browser.evaluate("!!document.getElementById('forced')")
    submit(browser, "#password-form", {"current": "first-password-1",
                                       "new": "my-own-password", "again": "my-own-password"},
           "/calls")
    assert browser.evaluate("document.getElementById('who').textContent") == (
        f"{name} (reviewer)")
    workspace = served.workspace()
    try:
        assert workspace.authenticate(name, "my-own-password").role == "reviewer"
    finally:
        workspace.close()
    assert audit_rows(served, username=name, action="password_change")


def _requests(browser: Browser) -> list[str]:
    """The API requests the page completed: none while its one stream stays open (a polling
    page lists its requests here)."""
    return browser.evaluate(
        "[...new Set(performance.getEntriesByType('resource').map(r => new URL(r.name))"
        ".filter(u => u.pathname.startsWith('/api/')).map(u => u.pathname))]")


def _fields(segment) -> dict:
    return {name: getattr(segment, name) for name in segment.__dataclass_fields__}
