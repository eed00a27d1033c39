"""Exports and HTML reports hold transcripts and scores: written owner-only (0600), like the
database, whatever the umask, and an older file is tightened (issue 10, item 8)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from qa.store import CallStore, StoreOptions

from .conftest import CALL_ID, fill


def _review(repo: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run(
        [str(repo / ".venv" / "bin" / "qa"), "review", *args, "--db", str(db)],
        capture_output=True, text=True, env=env, timeout=60,
        preexec_fn=lambda: os.umask(0o022),  # the usual umask: new files 0644
    )


def test_exports_and_reports_are_owner_only(repo: Path, tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    with CallStore(StoreOptions(path=db)) as store:
        fill(store)
    old = tmp_path / "old.json"
    old.write_text("stale")
    old.chmod(0o644)
    runs = {
        "export.csv": ("export", "--output"),
        "old.json": ("export", "--format", "json", "--output"),
        "report.html": ("show", CALL_ID, "--html"),
    }
    for name, args in runs.items():
        result = _review(repo, db, *args, str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert CALL_ID in path.read_text()
