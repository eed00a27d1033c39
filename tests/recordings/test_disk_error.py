"""A disk that refuses the recording mid-call does not stop the call: `qa run` under a file
size limit (the kernel fails the spool write with EFBIG once the channel's spool passes it,
as it fails a full disk with ENOSPC) still transcribes, checks and scores the whole call,
logs the failure, and leaves no recording and no unmasked spool file behind."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from tests.recordings.conftest import PACK, SAMPLE, qa

pytestmark = pytest.mark.slow

#: Bytes any file of the process may grow to: a channel's spool of the 52 s, 16 kHz sample
#: call passes it after about 25 s of audio; nothing else `qa run --no-store` writes does.
LIMIT = 800_000


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_recording_write_error_does_not_stop_the_call(tmp_path: Path):
    recordings = tmp_path / "rec"
    result = qa("run", "--source", f"file:{SAMPLE}", "--rules", str(PACK), "--language", "en",
                "--no-store", "--recording-dir", str(recordings), "--json",
                preexec_fn=limit_file_size)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    (summary,) = [line for line in lines if line["type"] == "summary"]
    # The whole call was heard and scored, past the point where the recording failed.
    assert summary["duration"] == pytest.approx(51.87, abs=0.05)
    assert summary["scorecard"] is not None
    assert any(line["type"] == "segment" and line["start"] > 45 for line in lines)
    assert "recording of call" in result.stderr and "(capture)" in result.stderr
    assert "File too large" in result.stderr
    assert not list(recordings.rglob("*.flac"))
    assert not list((recordings / ".partial").iterdir())
