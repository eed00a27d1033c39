"""The PostgreSQL backend: one server shared by many nodes, through psycopg 3.

The connection runs in autocommit mode and the store opens its write transactions
explicitly, as on SQLite. PostgreSQL's default isolation (read committed) plus row locks where
the store reads before it writes (`for_update`) keeps the same guarantees SQLite's single
writer gave: an override's "old points" are the latest ones even when two reviewers on two
machines save at once.

A lost connection (the server restarted, a network cut) is a transient failure: the next
attempt reconnects, so the store's retries ride out a restart and its spool keeps what a
longer outage holds back. A read outside a transaction reconnects once by itself. Read-only
stores (`qa review list/show/export`) run every transaction read-only on the server.

Passwords never reach a message: locations are shown with `qa.db.mask_url`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

from qa.db import mask_url
from qa.errors import DependencyError, StoreError

__all__ = ["PostgresBackend", "import_psycopg"]

log = logging.getLogger("qa.db.postgres")

#: Key of the advisory lock that serialises schema creation and upgrades across processes
#: (any constant; this one spells "qa-store" in ASCII).
_SCHEMA_LOCK = 0x71612D73746F7265
#: libpq refuses connect timeouts under 2 seconds.
_MIN_CONNECT_TIMEOUT_S = 2
#: Seconds of silence before TCP probes a server connection (and between probes).
_KEEPALIVE_IDLE_S = 5


def import_psycopg():
    """psycopg 3, or a `DependencyError` that says how to install it."""
    try:
        import psycopg
    except ImportError as exc:
        raise DependencyError(
            "a postgresql:// call store needs psycopg 3: pip install 'qa[postgres]' "
            "(or pip install 'psycopg[binary]')"
        ) from exc
    return psycopg


def _pyformat(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresBackend:
    """A call store in a PostgreSQL database.

    Args:
        url: `postgresql://user:password@host:port/database` (any libpq URL).
        busy_timeout: Seconds a statement waits for another transaction's row lock, and
            the connect timeout (at least 2 s, libpq's minimum).
        read_only: Every transaction is read-only on the server.

    Raises:
        DependencyError: psycopg is not installed.
        StoreError: The server cannot be reached or refuses the login.
    """

    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, busy_timeout: float, read_only: bool = False) -> None:
        self._psycopg = import_psycopg()
        self.errors: tuple[type[BaseException], ...] = (self._psycopg.Error,)
        self.url = url
        self.where = mask_url(url)
        self._read_only = read_only
        self._wait_ms = max(1, int(busy_timeout * 1000))
        self._connect_timeout = max(_MIN_CONNECT_TIMEOUT_S, round(busy_timeout))
        try:
            self._conn = self._connect()
        except self._psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot open the call store: "
                             f"{self._scrub(exc)}") from None

    def _scrub(self, exc: BaseException) -> str:
        """An error message with the URL's password removed, should a driver echo it."""
        text = str(exc).strip()
        secret = self._psycopg.conninfo.conninfo_to_dict(self.url).get("password")
        return text.replace(str(secret), "***") if secret else text

    def _connect(self):
        # A server that vanishes without closing the connection (a cut cable, a dead host)
        # must fail a statement within about busy_timeout, not TCP's quarter of an hour;
        # the URL's own settings win.
        defaults: dict[str, Any] = {
            "connect_timeout": self._connect_timeout, "application_name": "qa",
            "tcp_user_timeout": self._connect_timeout * 1000, "keepalives": 1,
            "keepalives_idle": _KEEPALIVE_IDLE_S, "keepalives_interval": _KEEPALIVE_IDLE_S,
            "keepalives_count": 2,
        }
        given = self._psycopg.conninfo.conninfo_to_dict(self.url)
        kwargs = {k: v for k, v in defaults.items() if k not in given}
        if self._read_only:
            kwargs["options"] = (given.get("options", "") +
                                 " -c default_transaction_read_only=on").strip()
        return self._psycopg.connect(self.url, autocommit=True, **kwargs)

    def _live(self):
        """The connection, replaced by a new one if the old one was lost."""
        if self._conn.broken or self._conn.closed:
            with suppress(self._psycopg.Error):
                self._conn.close()
            self._conn = self._connect()
            log.info("reconnected to call store %s", self.where)
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        query = _pyformat(sql) if params else sql
        args = tuple(params) if params else None
        if self.in_transaction:
            return self._conn.execute(query, args)
        try:
            return self._live().execute(query, args)
        except self._psycopg.OperationalError:
            if not self._conn.broken:
                raise
            # A read outside a transaction after the server restarted: once more, anew.
            return self._live().execute(query, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(_pyformat(sql), rows)

    def begin(self) -> None:
        conn = self._live()
        try:
            conn.execute("BEGIN")
        except self._psycopg.OperationalError:
            if not conn.broken:
                raise
            # The server restarted since the last statement: nothing was done yet, so anew.
            conn = self._live()
            conn.execute("BEGIN")
        # Waiting for another node's row lock counts against the store's retry budget.
        conn.execute(f"SET LOCAL lock_timeout = {self._wait_ms}")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if not self._conn.broken and not self._conn.closed and self.in_transaction:
            with suppress(self._psycopg.Error):
                self._conn.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        status = self._conn.info.transaction_status
        return status in (self._psycopg.pq.TransactionStatus.INTRANS,
                          self._psycopg.pq.TransactionStatus.INERROR)

    def set_wait(self, seconds: float) -> None:
        self._wait_ms = max(1, int(seconds * 1000))

    def lock_schema(self) -> None:
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))

    def transient(self, exc: BaseException) -> bool:
        # Lost connections, a shutting-down server, lock and statement timeouts, deadlocks,
        # serialisation failures and a full disk are all OperationalError in psycopg 3.
        return isinstance(exc, self._psycopg.OperationalError)

    def integrity(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.IntegrityError)

    def tables(self) -> set[str]:
        rows = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in rows.fetchall()}

    def columns(self, table: str) -> list[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))
        return [r[0] for r in rows.fetchall()]

    def identity_used(self, table: str, column: str) -> None:
        self.execute(
            f'SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max("{column}"), 0) + 1,'
            f' false) FROM "{table}"', (table, column))

    def close(self) -> None:
        with suppress(self._psycopg.Error):
            self._conn.close()
