"""Blind calibration everywhere, over HTTP against a real `qa serve`: while a session is open,
a reviewer sees no other reviewer's points for its calls on the call page, in the call list,
search results, score filters, the CSV export, the dispute list or the audit log; closing the
session (audited) shows them again."""

from __future__ import annotations

import csv
import dataclasses
import io
import random
import re
import string
import time

from qa.types import CallInfo, Speaker
from tests.web.conftest import PASSWORD, Client, Served, audit_rows


def _call(served: Served) -> tuple[str, float]:
    """A scored call of its own (a copy of the English call's transcript and scorecard, for
    an agent of its own), so other tests neither touch it nor see it; returns its id and
    automatic total."""
    call_id = f"calib-{time.time_ns()}"
    with served.store() as store:
        source = store.call(served.calls["agent-a"])
        store.start_call(CallInfo(call_id, "agent-calib", "file:test", time.time(),
                                  (Speaker.AGENT, Speaker.CUSTOMER), 16000))
        for segment in source.segments:
            store.add_segment(dataclasses.replace(segment, call_id=call_id))
        store.end_call(call_id, duration=source.duration, category=None, reason="hangup")
        store.save_scorecard(dataclasses.replace(source.scorecard, call_id=call_id))
        return call_id, store.call(call_id).scorecard.total


def _row(page: str, call_id: str) -> str:
    found = re.search(rf'<tr data-call="{re.escape(call_id)}">(.*?)</tr>', page, re.S)
    return found.group(1) if found else ""


def _export(client: Client, query: str) -> dict:
    status, _, text = client.get(f"/calls.csv?{query}")
    assert status == 200
    return {r["call_id"]: r for r in csv.DictReader(io.StringIO(text))}


def test_other_reviewers_points_are_hidden_until_the_session_closes(served: Served) -> None:
    call_id, automatic = _call(served)
    ravi, rita, sam, ada = (Client(served.url) for _ in range(4))
    for client, name in ((ravi, "ravi"), (rita, "rita"), (sam, "sam"), (ada, "ada")):
        client.login(name)
    # Ravi overrides an item before the session: an effective total Rita must not learn.
    ravi.get(f"/calls/{call_id}")
    assert ravi.post(f"/calls/{call_id}/override", {"rule": "closing", "points": "1",
                                                    "reason": "ravi-reason-marker"})[0] == 303
    with served.store() as store:
        effective = store.call(call_id).effective.total
    assert effective != automatic
    # The agent disputes two items; Ravi decides one (his comment must stay hidden too).
    agent = "calibagent" + "".join(random.choices(string.ascii_lowercase, k=8))
    workspace = served.workspace()
    workspace.add_user(agent, "agent", PASSWORD, agent_id="agent-calib")
    workspace.close()
    them = Client(served.url)
    them.login(agent)
    them.get(f"/calls/{call_id}")
    for rule in ("greeting", "shirk"):
        assert them.post(f"/calls/{call_id}/disputes", {"rule": rule,
                                                        "comment": "please look"})[0] == 303
    workspace = served.workspace()
    decided, still_open = sorted(d.id for d in workspace.disputes(call_id=call_id))
    workspace.close()
    ravi.get("/disputes")
    assert ravi.post(f"/disputes/{decided}/decide", {"state": "rejected", "points": "",
                                                     "comment": "ravi-decision-marker"})[0] == 303
    sam.get("/calibration")
    status, headers, _ = sam.post("/calibration", {"name": "blind week",
                                                   "calls": call_id})
    assert status == 303
    session = headers["Location"]

    # The call page: the automatic scorecard, no overrides, no override form.
    page = rita.get(f"/calls/{call_id}")[2]
    assert 'id="blind"' in page
    assert "ravi-reason-marker" not in page and "ravi" not in page
    assert f'id="score">{automatic:g}<' in page and f">{effective:g}<" not in page
    assert 'class="inline override"' not in page
    assert rita.post(f"/calls/{call_id}/override", {"rule": "closing", "points": "5",
                                                    "reason": "sneaky"})[0] == 403
    # The call list and a search: the automatic total, no override count.
    for query in ("agent=agent-calib", "q=not+my+department"):
        row = _row(rita.get(f"/calls?{query}")[2], call_id)
        assert f"<td>{automatic:g}" in row and "auto" not in row, (query, row)
    # Score filters judge a blind call by its automatic total, never the effective one.
    assert not _row(rita.get(f"/calls?min={effective:g}&max={effective:g}")[2], call_id)
    assert _row(rita.get(f"/calls?min={automatic:g}&max={automatic:g}")[2], call_id)
    # The export.
    line = _export(rita, "agent=agent-calib")[call_id]
    assert (float(line["total"]), line["overrides"]) == (automatic, "0")
    # The dispute list hides decisions; deciding one waits for the close.
    page = rita.get("/disputes")[2]
    assert f'data-dispute="{decided}"' in page and "ravi-decision-marker" not in page
    status, _, page = rita.post(f"/disputes/{still_open}/decide", {
        "state": "accepted", "points": "15", "comment": "fine"})
    assert status == 400 and "open calibration session" in page
    # The audit log of an admin who calibrates too: no points in the override's detail.
    entries = ada.get(f"/audit?call={call_id}&action=override")[2]
    assert "ravi-reason-marker" not in entries and "hidden while calibration is open" in entries
    # A co-supervisor's (here an admin's) agreement report waits for the close.
    assert ada.get(f"{session}/report")[0] == 403
    # The supervisor running the session is not blind.
    assert f'id="score">{effective:g}<' in sam.get(f"/calls/{call_id}")[2]

    # Closed (audited): the points show again, and scoring has ended.
    sam.get(session)
    assert rita.post(f"{session}/close", {})[0] == 403  # not hers to close
    assert sam.post(f"{session}/close", {})[0] == 303
    assert audit_rows(served, username="sam", action="calibration_close")
    page = rita.get(f"/calls/{call_id}")[2]
    assert 'id="blind"' not in page and "ravi-reason-marker" in page
    assert f'id="score">{effective:g}<' in page
    assert float(_export(rita, "agent=agent-calib")[call_id]["total"]) == effective
    assert _row(rita.get(f"/calls?min={effective:g}&max={effective:g}")[2], call_id)
    assert ada.get(f"{session}/report")[0] == 200
    assert "ravi-decision-marker" in rita.get("/disputes")[2]
    rita.get(session)
    status, _, page = rita.post(f"{session}/calls/{call_id}", {"points:closing": "1"})
    assert status == 400 and "closed" in page
