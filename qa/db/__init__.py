"""Database backends of the call store: one small interface, SQLite and PostgreSQL behind it.

`qa.store.CallStore` speaks SQL through a `Backend` and never imports a driver itself. SQL is
written once, with `?` placeholders and the subset both dialects share (`ON CONFLICT`,
`RETURNING`, double-quoted names); a backend adapts placeholders and reports its driver's
errors as transient (retry, then spool) or as the record's fault. DDL that differs (types,
triggers) lives in the migration steps of `qa.store`, one form per dialect.

A store location is either a file path (SQLite, the embedded default) or a
`postgresql://user:password@host:port/database` URL (a shared server for many nodes).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Backend", "is_url", "mask_url", "parse_location"]

_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)


def is_url(location: object) -> bool:
    """Whether a store location names a PostgreSQL server (`postgresql://` or `postgres://`)."""
    return isinstance(location, str) and bool(_URL.match(location))


def parse_location(text: str | Path) -> Path | str:
    """A `--db` value as a store location: a URL stays a string, anything else is a path."""
    if is_url(text):
        return str(text)
    return Path(text).expanduser()


def mask_url(url: str) -> str:
    """`url` with its password (in the authority or a `password=` parameter) replaced by
    `***`, for logs and messages; anything that is not a URL is returned as it is."""
    if not is_url(url):
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        auth, host = netloc.rsplit("@", 1)
        if ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        netloc = f"{auth}@{host}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else f"{k}={v}" if v else k
        for k, v in (p.partition("=")[::2] for p in parts.query.split("&") if p)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Backend(Protocol):
    """What the call store needs from a database connection.

    Attributes:
        dialect: `sqlite` or `postgresql`; selects the migration form.
        errors: The driver's exception classes (for `except`).
        for_update: Suffix that row-locks what a SELECT in a write transaction read (''
            where the write transaction already excludes other writers).
    """

    dialect: str
    errors: tuple[type[BaseException], ...]
    for_update: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def begin(self) -> None:
        """Opens a write transaction (reconnecting first if the connection was lost)."""

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    @property
    def in_transaction(self) -> bool: ...

    def set_wait(self, seconds: float) -> None:
        """How long the next statements wait for another writer's lock."""

    def lock_schema(self) -> None:
        """Inside a transaction: makes schema changes of other processes wait for this one."""

    def transient(self, exc: BaseException) -> bool:
        """Whether a failure may pass (lock, full disk, lost connection): retry, then spool."""

    def integrity(self, exc: BaseException) -> bool:
        """Whether a failure is a constraint refusing the row (a duplicate key)."""

    def tables(self) -> set[str]: ...

    def columns(self, table: str) -> list[str]: ...

    def identity_used(self, table: str, column: str) -> None:
        """After rows were inserted with explicit ids: later generated ids follow them."""

    def close(self) -> None: ...
