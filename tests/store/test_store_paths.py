"""A call store path that is not a regular file is refused, never chmod-ed: `--db /dev/zero`
as root used to make the device 0600 (a FIFO stands in for it here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from qa.errors import StoreError
from qa.store import CallStore, StoreOptions


@pytest.mark.parametrize("read_only", [False, True])
def test_a_fifo_is_refused_and_left_alone(tmp_path: Path, read_only: bool) -> None:
    fifo = tmp_path / "calls.db"
    os.mkfifo(fifo, 0o644)
    fifo.chmod(0o644)
    with pytest.raises(StoreError, match="not a regular file"):
        CallStore(StoreOptions(path=fifo, read_only=read_only))
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644
