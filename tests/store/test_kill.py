"""A process killed with SIGKILL mid-call loses nothing it had already handed to the store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from qa.store import CallStore, StoreOptions

from .conftest import CALL_ID

#: Segments the writer must have acknowledged before it is killed.
ACKS_BEFORE_KILL = 25

# The writer is the real CallStore in its own process: it starts a call, then stores
# segments one by one, printing each index only after add_segment returned (committed), and
# never ends the call. It would run for a long time if it were not killed.
WRITER = """
import sys
from pathlib import Path
from qa.types import CallInfo
from qa.store import CallStore, StoreOptions
from qa.types import Segment, Speaker

store = CallStore(StoreOptions(path=Path(sys.argv[1])))
store.start_call(CallInfo(sys.argv[2], "agent-1", "test", 0.0, (Speaker.AGENT,), 16000))
for i in range(100_000):
    store.add_segment(Segment(sys.argv[2], Speaker.AGENT, i, i + 0.5, f"segment {i}"))
    print(i, flush=True)
"""


def test_sigkill_mid_call_keeps_every_acknowledged_segment(tmp_path: Path, repo: Path) -> None:
    db_path = tmp_path / "calls.db"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path), CALL_ID],
        stdout=subprocess.PIPE,
        text=True,
        cwd=repo,
        env=env,
    )
    try:
        acked = [int(child.stdout.readline()) for _ in range(ACKS_BEFORE_KILL)]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert acked == list(range(ACKS_BEFORE_KILL))

    # Opening through the store recovers the WAL left behind by the killed writer.
    with CallStore(StoreOptions(path=db_path)) as store:
        record = store.call(CALL_ID)
    texts = [s.text for s in record.segments]
    assert len(texts) >= ACKS_BEFORE_KILL
    assert texts == [f"segment {i}" for i in range(len(texts))]
    assert record.duration is None  # the call never ended

    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
