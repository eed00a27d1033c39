"""What a stopped or killed process leaves in the spool folder: an ended call whose recording
was not written in time is finished (masked) by the next recorder; the unmasked audio of a
call whose process died mid-call is deleted, never encoded. The first process is a real
child process that exits on the spot (`os._exit`), so its pid is really gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from qa.recordings import Recorder, RecordingOptions
from qa.sources.base import CallInfo
from qa.store import CallStore, StoreOptions
from qa.types import Speaker
from tests.recordings.conftest import REPO, decode

CHILD = """
import os, sys, time
import numpy as np
from pathlib import Path
from qa.pipeline import CallSummary
from qa.recordings import Recorder, RecordingOptions
from qa.sources.base import CallInfo
from qa.types import AudioChunk, Segment, Speaker, Word

folder, ended, started = Path(sys.argv[1]), sys.argv[2] == "ended", float(sys.argv[3])
recorder = Recorder(RecordingOptions(guard_s=0.0), folder)
# This process stops before any recording is written (a stop past its time budget).
recorder._finish = lambda *args: time.sleep(60)
info = CallInfo("call-1", "", "rtp://x", started, (Speaker.AGENT, Speaker.CUSTOMER), 8000)
recorder.open(info)
for speaker, hz in ((Speaker.AGENT, 220), (Speaker.CUSTOMER, 330)):
    n = np.arange(16000)
    pcm = (6000 * np.sin(2 * np.pi * hz * n / 8000)).astype(np.int16)
    recorder.write(AudioChunk("call-1", speaker, pcm, 8000, 0))
if ended:
    words = (Word(0.5, 1.0, "4539", 0.9), Word(1.0, 1.5, "1488", 0.9),
             Word(1.5, 1.75, "0343", 0.9), Word(1.75, 2.0, "6467", 0.9))
    recorder.segment(Segment("call-1", Speaker.CUSTOMER, 0.5, 2.0, "4539 1488 0343 6467",
                             words, language="en"), 0.0)
    recorder.call_ended(CallSummary("call-1", "", "rtp://x", "stopped", 2.0, (), 0, 0, 0,
                                    0.0, 0.0, 0.0))
print(os.getpid(), flush=True)
os._exit(0)
"""


def child(folder: Path, ended: bool, started: float) -> int:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), "ended" if ended else "open", str(started)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120, check=True)
    return int(result.stdout.strip())


def test_an_ended_call_left_unwritten_is_finished_by_the_next_recorder(tmp_path: Path):
    started = time.time()
    pid = child(tmp_path / "rec", ended=True, started=started)
    left = sorted(p.name for p in (tmp_path / "rec" / ".partial").iterdir())
    assert left == [f"call-1.{pid}.agent.s16", f"call-1.{pid}.customer.s16",
                    f"call-1.{pid}.ended"]
    store = CallStore(StoreOptions(path=tmp_path / "calls.db"))
    store.start_call(CallInfo("call-1", "", "rtp://x", started,
                              (Speaker.AGENT, Speaker.CUSTOMER), 8000))
    recorder = Recorder(RecordingOptions(), tmp_path / "rec", store)
    assert recorder.wait_idle(30)
    recording = store.recording("call-1")
    assert recording is not None and recording.duration == 2.0
    assert [(m.channel, m.start, m.end, m.kind) for m in recording.masked_spans] == [
        (Speaker.CUSTOMER, 0.5, 2.0, "CARD")]
    pcm, rate = decode(Path(recording.path))
    assert rate == 8000 and pcm.shape == (16000, 2)
    customer = pcm[:, 1].astype(np.float64)
    masked = customer[4000:16000]
    assert np.argmax(np.abs(np.fft.rfft(masked))) * 8000 / len(masked) == 1000
    assert np.argmax(np.abs(np.fft.rfft(customer[:4000]))) * 8000 / 4000 == 330
    assert not list((tmp_path / "rec" / ".partial").iterdir())
    recorder.close()
    store.close()


def test_a_call_whose_process_died_mid_call_is_deleted_unencoded(tmp_path: Path):
    child(tmp_path / "rec", ended=False, started=time.time())
    assert len(list((tmp_path / "rec" / ".partial").iterdir())) == 2
    # A save cut short by the same kind of death (no process has this pid).
    (tmp_path / "rec" / ".partial" / "call-9.99999999.ended.tmp").write_text("{")
    recorder = Recorder(RecordingOptions(), tmp_path / "rec")
    assert recorder.wait_idle(30)
    assert not list((tmp_path / "rec" / ".partial").iterdir())
    assert not list((tmp_path / "rec").rglob("*.flac"))
    recorder.close()
