"""The SQLite backend: one file, WAL, owner-only, the embedded default.

Writes take SQLite's write lock up front (`BEGIN IMMEDIATE`), so the call store's write
transactions never deadlock against a reader upgrading. `busy_timeout` is the lock wait; the
store shortens it per attempt while it retries. The database file and its `-wal`/`-shm`
companions are created owner-only (SQLite gives the companions the main file's mode).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from qa.errors import StoreError

__all__ = ["SQLiteBackend"]

log = logging.getLogger("qa.db.sqlite")

#: SQLite errors worth retrying, by primary result code: BUSY, LOCKED, NOMEM, READONLY,
#: IOERR, FULL, CANTOPEN, PROTOCOL (another process's lock, a full disk, a failing device).
_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
#: The first 16 bytes of every SQLite 3 database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _create_private(path: Path) -> None:
    """Creates the database file owner-only before SQLite opens it, or tightens an old one."""
    with suppress(OSError):
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode) and not stat.S_IMODE(info.st_mode) & 0o077:
            # Nothing to do, and the file must not be opened: closing any descriptor of it
            # drops every POSIX lock this process holds on it, so a connection already open
            # here (the workspace opens its own beside the call store's) would look closed to
            # other processes, and the last of those to close would checkpoint and delete the
            # WAL under it: its later commits would be seen by nobody.
            return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o600)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # Never chmod a device or a FIFO (`--db /dev/zero` as root made it 0600).
            raise StoreError(f"{path}: not a regular file, cannot hold a call store")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            log.warning("tightening permissions of %s from %o to 600", path, mode)
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _open_read_only(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Opens an existing SQLite file for reading without changing it or its folder.

    SQLite's `mode=ro` never writes the database; a store in WAL mode still needs its `-shm`
    file, which cannot be created in a read-only folder, so there the store is opened as
    `immutable` (nobody can be writing to a file in a folder no one may write to).
    """
    from qa.files import open_regular

    name = str(path)
    with open_regular(name, lambda _p, reason: StoreError(f"{name}: {reason}")) as handle:
        head = handle.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "not an SQLite database"
        raise StoreError(f"{name}: not a qa call store ({what})")
    uri = "file:" + urllib.parse.quote(os.path.abspath(name))
    error: Exception | None = None
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        db = None
        try:
            db = sqlite3.connect(uri + query, uri=True, timeout=busy_timeout,
                                 isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only = ON")
            db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            return db
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            error = exc
    raise StoreError(f"{name}: cannot open the call store read-only: {error}") from None


class SQLiteBackend:
    """A call store in one SQLite file.

    Args:
        path: The database file (created owner-only with its folder unless `read_only`).
        busy_timeout: Seconds a statement waits for another process's lock.
        wal: Use write-ahead logging (readers never block the live writer).
        read_only: Open an existing file for reading only (never created or changed).

    Raises:
        StoreError: The file cannot be created or opened.
    """

    dialect = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    for_update = ""  # BEGIN IMMEDIATE already excludes every other writer

    def __init__(self, path: Path, *, busy_timeout: float, wal: bool = True,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        if read_only:
            self._db = _open_read_only(self.path, busy_timeout)
            return
        try:
            _create_private(self.path)
            self._db = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # the store's lock serialises every use
            )
            self._db.execute("PRAGMA foreign_keys = ON")
            if wal:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{self.path}: cannot use WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the call store: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot create the call store: {exc.strerror}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def begin(self) -> None:
        # IMMEDIATE takes the write lock up front, so a reader upgrading never deadlocks.
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        # A failed COMMIT leaves the transaction open, a full disk may have rolled it back
        # already: either way none of it was written.
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def set_wait(self, seconds: float) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")

    def lock_schema(self) -> None:
        pass  # the IMMEDIATE transaction holds the only write lock

    def transient(self, exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:  # older Pythons: fall back on the message
            return any(w in str(exc) for w in ("locked", "busy", "disk", "I/O", "full"))
        return code & 0xFF in _TRANSIENT

    def integrity(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def tables(self) -> set[str]:
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows}

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self._db.execute(f'PRAGMA table_info("{table}")')]

    def identity_used(self, table: str, column: str) -> None:
        pass  # INTEGER PRIMARY KEY (and sqlite_sequence) continue after the largest id

    def close(self) -> None:
        self._db.close()
