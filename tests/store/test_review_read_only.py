"""`qa review list/show/export` change nothing: they open the store read-only, refuse files
that are not a qa store, and work on a store the user cannot write (issue 10, item 9)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.errors import StoreError
from qa.store import CallStore, StoreOptions

from .conftest import CALL_ID, fill

READERS = (("list",), ("show", CALL_ID), ("export", "--format", "json"))


def review(repo: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("QA_DB", None)
    return subprocess.run(
        [str(repo / ".venv" / "bin" / "qa"), "review", *args, "--db", str(db)],
        capture_output=True, text=True, env=env, timeout=60, cwd="/",
    )


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in the folder: content hash and mode."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.iterdir())
    }


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    db.execute("INSERT INTO notes (text) VALUES ('someone else''s data')")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), r"not a qa call store \(an empty file\)"),
        (lambda p: p.write_text("calls,agent\n1,a\n"), r"not a qa call store \(not an SQLite"),
        (_foreign, "not a qa call store .*without the tables calls, events, overrides"),
    ],
)
@pytest.mark.parametrize("action", [*READERS, ("override", CALL_ID, "greeting", "--points",
                                               "1", "--reviewer", "x", "--reason", "y")])
def test_a_file_that_is_not_a_store_is_refused_and_untouched(
    repo: Path, tmp_path: Path, make, message, action
) -> None:
    path = tmp_path / "other.db"
    make(path)
    path.chmod(0o644)
    before = snapshot(tmp_path)
    result = review(repo, path, *action)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"qa: error: {path}: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    # Not chmod-ed, not turned into a database, not switched to WAL, no companions left.
    assert snapshot(tmp_path) == before


def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def read_only_store() -> Iterator[Path]:
    """A filled store, checkpointed, file 0444 in a 0555 folder. Root may write anything, so
    as root both are also made immutable (`chattr +i`): the store really is read-only."""
    folder = Path(tempfile.mkdtemp(prefix="qa-ro-"))
    path = folder / "calls.db"
    with CallStore(StoreOptions(path=path)) as store:
        fill(store)
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for companion in folder.glob("calls.db-*"):
        companion.unlink()
    path.chmod(0o444)
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and _chattr("+i", path, folder)
    try:
        if os.geteuid() == 0 and not immutable:
            pytest.skip("running as root where chattr +i is not available: nothing is read-only")
        yield path
    finally:
        if immutable:
            _chattr("-i", path, folder)
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize("action", READERS)
def test_readers_work_on_a_store_they_cannot_write(repo: Path, read_only_store, action) -> None:
    path = read_only_store
    with pytest.raises(OSError):  # really read-only: not even a companion file can be made
        (path.parent / "probe").touch()
    before = snapshot(path.parent)
    result = review(repo, path, *action)
    assert result.returncode == 0, result.stderr
    assert CALL_ID in result.stdout
    assert snapshot(path.parent) == before  # mode 0444 kept, nothing written


def test_readers_leave_a_writable_store_as_it_was(repo: Path, tmp_path: Path) -> None:
    """A store the user may write, mode 0640 (a shared group's): reading keeps the mode."""
    path = tmp_path / "calls.db"
    with CallStore(StoreOptions(path=path)) as store:
        fill(store)
    path.chmod(0o640)
    for action in READERS:
        result = review(repo, path, *action)
        assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    with CallStore(StoreOptions(path=path)) as store:
        fill(store)
    with CallStore(StoreOptions(path=path, read_only=True)) as store:
        assert store.call(CALL_ID).info.agent_id == "agent-7"
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
            store.add_override(CALL_ID, "greeting", points=1, reviewer="x", reason="y")
    with pytest.raises(StoreError, match="no such file"):
        CallStore(StoreOptions(path=tmp_path / "missing.db", read_only=True))
    assert not (tmp_path / "missing.db").exists()
