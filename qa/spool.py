"""The store's spool: writes the database could not take, kept in order until it can.

When the call store keeps failing (another process holds the lock, the disk is full, an I/O
error), its writes are appended here instead of being lost: one JSON object per line, in an
owner-only file next to the database (`calls.db.spool`). The store replays the spool in order
at its next write and when it opens, then empties it. Each record carries an idempotency key
that the replay records in the same transaction as the write, so a replay cut short (a kill)
and repeated never writes a record twice.

If the spool file itself cannot be written (the same full disk), records are kept in memory
and replayed after the file's, so nothing is lost while the process lives.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["Spool"]

log = logging.getLogger("qa.spool")


class Spool:
    """An append-only JSON-lines file of store writes, with an in-memory overflow.

    Args:
        path: The spool file (created owner-only on the first append).

    Not thread-safe: the store calls it under its own lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._memory: list[dict] = []
        self._in_file = self._count_file()

    def _count_file(self) -> int:
        try:
            with self.path.open("rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    # A process killed mid-append left a torn line: end it, so the next
                    # record starts on a line of its own.
                    f.write(b"\n")
                return sum(1 for line in data.splitlines() if line.strip())
        except FileNotFoundError:
            return 0

    def __len__(self) -> int:
        """Records waiting to be replayed."""
        return self._in_file + len(self._memory)

    def append(self, record: dict) -> None:
        """Adds a record at the end (fsynced, so a crash right after keeps it)."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        if not self._memory:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._in_file += 1
                return
            except OSError as exc:
                log.error("cannot write the spool %s (%s): keeping writes in memory until the "
                          "store is back", self.path, exc.strerror)
        # Once one record is in memory, later ones follow it there, to keep the order.
        self._memory.append(record)

    def records(self) -> list[dict]:
        """Every waiting record, oldest first. A torn last line (a process killed while
        appending) is skipped and logged: its write was never acknowledged as spooled."""
        out: list[dict] = []
        try:
            with self.path.open("rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                log.error("%s:%d: unreadable spool record skipped", self.path, number)
        return out + list(self._memory)

    def clear(self) -> None:
        """Empties the spool once every record is in the store."""
        self._memory.clear()
        if self._in_file or self.path.exists():
            with open(self.path, "wb"):
                pass
            self._in_file = 0
