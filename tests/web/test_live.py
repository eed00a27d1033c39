"""The live floor's Server-Sent Event streams, over HTTP against a real `qa serve` process
(another process writes the store) and against the workspace served from this process
(`WorkspaceThread`, as `qa run --serve-port` runs it, woken by the pipeline listener)."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.store import CallStore, StoreOptions
from qa.types import CallInfo, Event, EventKind, Segment, Severity, Speaker
from qa.web import WebOptions
from qa.web.live import LIVE, LiveOptions
from qa.web.server import WorkspaceThread
from qa.web.workspace import Workspace
from tests.conftest import REPO
from tests.web.conftest import (
    PASSWORD,
    Client,
    Served,
    audit_rows,
    start_server,
    stop_server,
)


class Stream:
    """An EventSource as a browser opens it: the session cookie, `Last-Event-ID` when
    resuming; a thread parses the events into a queue (None at the end of the stream)."""

    def __init__(self, client: Client, path: str, last_id: str = "") -> None:
        url = urllib.parse.urlsplit(client.base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        headers = {"Accept": "text/event-stream",
                   "Cookie": "; ".join(f"{c.name}={c.value}" for c in client.jar)}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.events: queue.Queue = queue.Queue()
        self.last_id = last_id
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event_id, kind, data = "", "message", []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        self.events.put((event_id, kind, json.loads("\n".join(data))))
                    event_id, kind, data = event_id, "message", []
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (OSError, ValueError, AttributeError):
            pass  # closed by the test (http.client drops its file under the reader)
        self.events.put(None)

    def next(self, timeout: float = 15.0) -> tuple[str, str, dict] | None:
        """The next event (id, kind, data), or None when the stream ended."""
        item = self.events.get(timeout=timeout)
        if item is not None:
            self.last_id = item[0]
        return item

    def until(self, kind: str, check=lambda data: True, timeout: float = 15.0) -> list:
        """Events up to and including the first of `kind` that passes `check`."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            item = self.next(max(0.1, deadline - time.monotonic()))
            assert item is not None, f"stream ended before a {kind}: {seen}"
            seen.append(item)
            if item[1] == kind and check(item[2]):
                return seen

    def close(self) -> None:
        self.conn.close()


def _segment(call_id: str, start: float, text: str, speaker=Speaker.AGENT) -> Segment:
    return Segment(call_id=call_id, speaker=speaker, start=start, end=start + 1.5, text=text,
                   words=(), language="en", avg_logprob=-0.2, no_speech_prob=0.01)


def _start(store: CallStore, agent: str = "agent-live") -> str:
    call_id = f"live-{time.time_ns()}"
    store.start_call(CallInfo(call_id, agent, "rtp:test", time.time(),
                              (Speaker.AGENT, Speaker.CUSTOMER), 8000))
    return call_id


def _shirk(call_id: str, at: float) -> Event:
    return Event(call_id, at, EventKind.FORBIDDEN_PHRASE, "shirk", Severity.CRITICAL, -10.0,
                 "not my department", "", Speaker.AGENT)


@pytest.fixture
def store(served: Served) -> Iterator[CallStore]:
    with served.store() as opened:
        yield opened


def test_a_call_stream_pushes_new_rows_and_resumes_from_the_last_event_id(
    served: Served, store: CallStore
) -> None:
    call_id = _start(store)
    store.add_segment(_segment(call_id, 0.0, "thank you for calling"))
    sam = Client(served.url)
    sam.login("sam")
    stream = Stream(sam, f"/api/calls/{call_id}/stream")
    assert stream.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    first = stream.until("segment")
    assert first[-1][2]["text"] == "thank you for calling"
    # Written while the stream is open: pushed, with the prompt the agent saw.
    store.add_segment(_segment(call_id, 2.0, "that is not my department"))
    store.add_event(_shirk(call_id, 3.0))
    assert stream.until("segment")[-1][2]["text"] == "that is not my department"
    prompt = stream.until("prompt")[-1][2]
    assert (prompt["rule"], prompt["kind"], prompt["call"]) == ("shirk", "forbidden_phrase",
                                                                 call_id)
    assert prompt["prompt"] == "Forbidden phrase (shirk)"  # the default text: no message
    resume = stream.last_id
    stream.close()

    # Missed while the browser was away: sent on reconnect, and only that.
    store.add_segment(_segment(call_id, 5.0, "let me transfer you", Speaker.AGENT))
    store.add_segment(_segment(call_id, 7.0, "thanks", Speaker.CUSTOMER))
    again = Stream(sam, f"/api/calls/{call_id}/stream", last_id=resume)
    got = again.until("segment", lambda d: d["text"] == "thanks")
    assert [d["text"] for _, k, d in got if k == "segment"] == ["let me transfer you", "thanks"]
    assert not [k for _, k, _ in got if k == "prompt"]
    store.end_call(call_id, duration=9.0, category=None, reason="hangup")
    ended = again.until("ended")[-1][2]
    assert ended == {"call": call_id, "reason": "hangup"}
    assert again.next() is None  # the server ends the stream with the call
    # Opening the stream was audited once, not once per reconnect.
    assert len(audit_rows(served, username="sam", action="view_live", call_id=call_id)) == 1


def test_streams_are_authorised_per_stream(served: Served, store: CallStore) -> None:
    theirs = _start(store, agent="agent-b")
    mine = _start(store, agent="agent-a")
    store.add_segment(_segment(mine, 0.0, "hello"))
    ann = Client(served.url)
    ann.login("ann")  # agent-a
    denied = Stream(ann, f"/api/calls/{theirs}/stream")
    assert denied.status == 403
    assert audit_rows(served, username="ann", action="view_live_denied", call_id=theirs)
    own = Stream(ann, f"/api/calls/{mine}/stream")
    assert own.status == 200 and own.until("segment")[-1][2]["text"] == "hello"
    own.close()
    for name in ("ann", "rita"):  # the floor is for supervisors and admins
        client = Client(served.url)
        client.login(name)
        assert Stream(client, "/api/live/stream").status == 403
    assert Stream(Client(served.url), "/api/live/stream").status == 401  # no session
    for call_id in (theirs, mine):
        store.end_call(call_id, duration=1.0, category=None, reason="hangup")


def test_the_floor_stream_starts_with_the_floor_then_pushes_changes(
    served: Served, store: CallStore
) -> None:
    before = _start(store)
    store.add_event(_shirk(before, 1.0))
    sam = Client(served.url)
    sam.login("sam")
    floor = Stream(sam, "/api/live/stream")
    _, kind, snapshot = floor.next()
    assert kind == "floor"
    card = next(c for c in snapshot["calls"] if c["call"] == before)
    assert [e["rule"] for e in card["events"]] == ["shirk"]
    later = _start(store)
    assert floor.until("started", lambda d: d["call"] == later)[-1][2]["agent"] == "agent-live"
    store.add_segment(_segment(later, 4.0, "words the floor does not show"))
    progress = floor.until("progress", lambda d: d["call"] == later)[-1][2]
    assert progress == {"call": later, "audio_time": 5.5}  # how far, not what was said
    store.add_event(_shirk(later, 6.0))
    assert floor.until("prompt", lambda d: d["call"] == later)[-1][2]["time"] == 6.0
    store.end_call(later, duration=7.0, category=None, reason="hangup")
    floor.until("ended", lambda d: d["call"] == later)
    floor.close()
    store.end_call(before, duration=2.0, category=None, reason="hangup")


def test_sigterm_ends_open_streams_and_stops_the_server_within_seconds(
    served: Served, tmp_path: Path
) -> None:
    proc, url = start_server(served.db)
    try:
        sam = Client(url)
        sam.login("sam")
        streams = [Stream(sam, "/api/live/stream") for _ in range(3)]
        assert all(s.next()[1] == "floor" for s in streams)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        stopped = time.monotonic() - began
        assert all(s.next(5) is None for s in streams)  # each stream ended cleanly
    finally:
        stop_server(proc)
    assert stopped < 5.0, stopped


@pytest.fixture
def in_process(served: Served, tmp_path: Path) -> Iterator[tuple[WorkspaceThread, Path]]:
    """The workspace served from a thread of this process, over a copy of the served store,
    polling the store only every 60 s: what arrives sooner was pushed by the wake-up."""
    db = tmp_path / "calls.db"
    shutil.copy(served.db, db)
    thread = WorkspaceThread(WebOptions(db=db, port=0,
                                        live=LiveOptions(poll_s=60.0, keepalive_s=0.5)))
    thread.start()
    try:
        yield thread, db
    finally:
        thread.stop()


def test_in_process_the_pipeline_wakes_the_streams_one_poll_for_all(
    in_process: tuple[WorkspaceThread, Path]
) -> None:
    thread, db = in_process
    feed = thread._runner.app[LIVE]
    sam = Client(thread.url.rstrip("/"))
    sam.login("sam")
    floors = [Stream(sam, "/api/live/stream") for _ in range(5)]
    assert all(s.next()[1] == "floor" for s in floors)
    with CallStore(StoreOptions(path=db)) as store:
        listener = thread.listener
        call_id = _start(store)
        info = CallInfo(call_id, "agent-live", "rtp:test", 0.0, (Speaker.AGENT,), 8000)
        polls = feed.polls
        listener.call_started(info)
        for s in floors:
            assert s.until("started", lambda d: d["call"] == call_id, timeout=10)
        event = _shirk(call_id, 2.0)
        store.add_event(event)
        listener.event(event)
        for s in floors:
            assert s.until("prompt", lambda d: d["call"] == call_id, timeout=10)
        # Two wake-ups, two reads of the store for five browsers (a subscription's own
        # wake-up may add one each).
        assert feed.polls - polls <= 3
        store.end_call(call_id, duration=3.0, category=None, reason="hangup")
    for s in floors:
        s.close()


def test_a_call_that_ends_just_before_the_shutdown_still_reaches_its_streams(
    served: Served, tmp_path: Path
) -> None:
    """`qa run --serve-port` stops the server right after its last call: the feed reads the
    store once more, so the call's stream and the floor get `ended` before they close."""
    db = tmp_path / "calls.db"
    shutil.copy(served.db, db)
    thread = WorkspaceThread(WebOptions(db=db, port=0,
                                        live=LiveOptions(poll_s=60.0, keepalive_s=0.5)))
    thread.start()
    try:
        with CallStore(StoreOptions(path=db)) as store:
            call_id = _start(store)
            sam = Client(thread.url.rstrip("/"))
            sam.login("sam")
            floor = Stream(sam, "/api/live/stream")
            assert floor.next()[1] == "floor"
            heard = Stream(sam, f"/api/calls/{call_id}/stream")
            store.add_segment(_segment(call_id, 0.0, "thank you for calling"))
            thread.listener.segment(_segment(call_id, 0.0, "thank you for calling"), 0.1)
            assert heard.until("segment", timeout=10)[-1][2]["text"] == "thank you for calling"
            store.end_call(call_id, duration=2.0, category=None, reason="hangup")
            # No wake-up and no poll for 60 s: only the last read at shutdown can tell them.
    finally:
        thread.stop()
    assert heard.until("ended", timeout=10)[-1][2] == {"call": call_id, "reason": "hangup"}
    assert heard.next(5) is None
    assert floor.until("ended", lambda d: d["call"] == call_id, timeout=10)
    assert floor.next(5) is None


def test_a_stream_ends_when_its_account_is_disabled(
    in_process: tuple[WorkspaceThread, Path]
) -> None:
    thread, db = in_process
    workspace = Workspace(db)
    workspace.add_user("temp-sup", "supervisor", PASSWORD)
    temp = Client(thread.url.rstrip("/"))
    temp.login("temp-sup")
    floor = Stream(temp, "/api/live/stream")
    assert floor.next()[1] == "floor"
    workspace.set_disabled("temp-sup")
    workspace.close()
    deadline = time.monotonic() + 15
    while floor.next(15) is not None:
        assert time.monotonic() < deadline, "the stream outlived the account"


def test_qa_run_serves_the_workspace_in_process_and_pushes_what_it_hears(
    tmp_path: Path, shared_audio: Path
) -> None:
    """`qa run --serve-port`: real Whisper on a real recording replayed in real time; the
    floor and the call's stream, served by the capture process itself, push its segments."""
    db = tmp_path / "calls.db"
    CallStore(StoreOptions(path=db)).close()
    workspace = Workspace(db)
    workspace.add_user("sup", "supervisor", PASSWORD)
    workspace.close()
    wav = shared_audio / "en_jfk_inaugural_16k_mono.wav"  # 11 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa", "run", "--source", f"file:{wav}?realtime=1",
         "--language", "en", "--agent", "agent-x", "--db", str(db), "--serve-port", "0",
         "--no-recording", "--json"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        ready = {}
        for line in proc.stdout:
            ready = json.loads(line)
            if ready.get("type") == "ready":
                break
        assert ready.get("workspace", "").startswith("http://127.0.0.1:"), ready
        sup = Client(ready["workspace"].rstrip("/"))
        assert sup.login("sup")[0] == 303
        floor = Stream(sup, "/api/live/stream")
        _, kind, snapshot = floor.next()
        assert kind == "floor"
        if snapshot["calls"]:
            call_id = snapshot["calls"][0]["call"]
        else:
            call_id = floor.until("started")[-1][2]["call"]
        assert floor.until("progress", lambda d: d["call"] == call_id, timeout=60)
        heard = Stream(sup, f"/api/calls/{call_id}/stream")
        got = heard.until("ended", timeout=90)
        text = " ".join(d["text"] for _, k, d in got if k == "segment").lower()
        assert "fellow americans" in text, text
        assert got[-1][2]["reason"]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
