"""Issue 4: `qa run` killed with SIGKILL mid-call loses at most the utterance in flight.

The real service replays the clean call in real time into a call store; once it has printed
some segments it is killed without warning. Every segment it printed must be in the store
(the store listener runs before the printer), the call row must exist, and the database must
pass SQLite's integrity check.

Issue 10: the killed run's call is not left "running" forever: the next `qa run` on the same
store closes it as `interrupted`, with a scorecard computed from the events it had stored.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

from qa.store import CallStore, StoreOptions

from .calls import PACK

#: Segment lines printed before the kill (the call is mid-way: it has 13 turns).
SEGMENTS_BEFORE_KILL = 3


def test_sigkill_mid_call_keeps_every_printed_segment(calls, repo, tmp_path):
    db = tmp_path / "calls.db"
    errors = (tmp_path / "stderr.txt").open("w")
    run = subprocess.Popen(
        [sys.executable, "-m", "qa", "run", "--json", "--rules", str(PACK), "--db", str(db),
         "--source", f"file:{calls['clean'].path}?realtime=1"],
        cwd=repo, stdout=subprocess.PIPE, stderr=errors, text=True,
    )
    printed = []
    call_id = None
    try:
        for line in run.stdout:
            message = json.loads(line)
            if message["type"] == "call_started":
                call_id = message["call"]
            elif message["type"] == "segment":
                printed.append(message)
                if len(printed) == SEGMENTS_BEFORE_KILL:
                    os.kill(run.pid, signal.SIGKILL)
                    break
            assert message["type"] != "summary", "the call ended before the kill"
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(timeout=30)
        run.stdout.close()
        errors.close()
    assert run.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert call_id is not None and len(printed) == SEGMENTS_BEFORE_KILL

    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        connection.close()
    with CallStore(StoreOptions(path=db)) as store:
        record = store.call(call_id)
    assert record.end_reason is None and record.duration is None  # killed mid-call
    stored = {(str(s.speaker), round(s.start, 2), round(s.end, 2)) for s in record.segments}
    assert len(record.segments) >= SEGMENTS_BEFORE_KILL
    for segment in printed:
        assert (segment["speaker"], segment["start"], segment["end"]) in stored, segment

    # The next run on this store (another call) closes the dead run's call.
    again = subprocess.run(
        [sys.executable, "-m", "qa", "run", "--json", "--rules", str(PACK), "--db", str(db),
         "--source", f"file:{calls['violations'].path}"],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"closed 1 calls left open by runs that died: {call_id}" in again.stderr
    new_calls = {json.loads(line)["call"] for line in again.stdout.splitlines()
                 if '"call_started"' in line}
    assert len(new_calls) == 1 and call_id not in new_calls  # a new id, never the old one
    with CallStore(StoreOptions(path=db)) as store:
        closed = store.call(call_id)
        (new_call,) = new_calls
        assert store.call(new_call).end_reason == "end of file"
    assert closed.end_reason == "interrupted"
    assert closed.duration >= max(s.end for s in record.segments)
    assert closed.scorecard is not None and closed.scorecard.items
    assert len(closed.segments) == len(record.segments)  # nothing added, nothing lost
