"""`qa db copy`: one call store's contents into another, SQLite and PostgreSQL either way.

Rows keep their keys (call ids, segment, event, override and label ids), so a copy is the
same store in another database, and copying again is safe: rows already there are left alone.
Append-only rows (segments, events, the overrides audit trail, labels) are inserted once and
must match afterwards: a row with the same id and other content means the target is another
store, and the copy stops before writing that batch. Rows that change during a call's life
(the call's end, the automatic scorecard and its items) take the source's values, so a store
copied while it was still being written catches up by copying it again.

The target's schema is created or upgraded first; the source must already be at this
program's version (`qa db migrate` it). Rows are written in batches of whole groups (a
scorecard's items together), each batch one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from qa.db import Backend
from qa.errors import StoreError

__all__ = ["TableCopy", "copy_store"]

log = logging.getLogger("qa.db.copy")

#: Rows per write transaction (whole groups, so a batch may be a little larger).
_BATCH_ROWS = 500
#: Tables that are the store's bookkeeping, not its contents; and login sessions (a copied
#: store starts with nobody logged in).
_NOT_COPIED = frozenset({"schema_version", "spool_applied", "sqlite_sequence", "sessions"})
#: Prefix of the transcript search index's tables (FTS5's and its shadow tables on SQLite,
#: the tsvector index and its queue on PostgreSQL): derived from the segments, so the target
#: builds its own (`qa.web.search`).
_DERIVED = "transcript_"


@dataclass(frozen=True, slots=True)
class TableCopy:
    """What copying one table did.

    Attributes:
        table: The table.
        added: Rows the target did not have.
        updated: Rows the target had with older values (never append-only ones).
        unchanged: Rows the target already had as they are.
        removed: Target rows of a copied group the source no longer has (a re-scored
            call's surplus scorecard items).
    """

    table: str
    added: int
    updated: int
    unchanged: int
    removed: int


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _batches(rows: list[tuple], group_width: int) -> list[list[tuple]]:
    """`rows` (sorted by key) cut into batches of about `_BATCH_ROWS`, never inside a group
    (rows sharing their first `group_width` key values)."""
    out: list[list[tuple]] = []
    batch: list[tuple] = []
    for _, group in groupby(rows, key=lambda r: r[:group_width]):
        batch.extend(group)
        if len(batch) >= _BATCH_ROWS:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


def _copy_table(src: Backend, dst: Backend, table: str, keys: Sequence[str],
                append_only: bool, identity: str) -> TableCopy:
    columns = src.columns(table)
    missing = [c for c in columns if c not in set(dst.columns(table))]
    if missing:
        raise StoreError(f"table {table}: the target has no column {', '.join(missing)}")
    # Key columns first: rows sort and group by them, and key values are row[:len(keys)].
    ordered = [*keys, *(c for c in columns if c not in keys)]
    names = ", ".join(f'"{c}"' for c in ordered)
    order = ", ".join(f'"{k}"' for k in keys)
    rows = [tuple(r) for r in src.execute(f"SELECT {names} FROM {table} ORDER BY {order}")
            .fetchall()]
    width = len(keys)
    # A scorecard's items are one group: the target's items of a copied scorecard become the
    # source's (a re-score may have fewer). A single-column key groups nothing.
    mirror = width > 1 and not append_only
    group_width = width - 1 if mirror else width
    settable = ordered[width:]
    insert = f"INSERT INTO {table} ({names}) VALUES ({_marks(len(ordered))})"
    if not append_only and settable:
        insert += (f" ON CONFLICT ({order}) DO UPDATE SET "
                   + ", ".join(f'"{c}" = excluded."{c}"' for c in settable))
    added = updated = unchanged = removed = 0
    for batch in _batches(rows, group_width):
        groups = sorted({r[0] for r in batch})
        dst.begin()
        try:
            have: dict[tuple, tuple] = {}
            for i in range(0, len(groups), _BATCH_ROWS):
                chunk = groups[i:i + _BATCH_ROWS]
                found = dst.execute(f'SELECT {names} FROM {table} WHERE "{keys[0]}" IN'
                                    f" ({_marks(len(chunk))})", chunk).fetchall()
                have.update((tuple(r[:width]), tuple(r)) for r in found)
            write: list[tuple] = []
            for row in batch:
                old = have.pop(row[:width], None)
                if old is None:
                    added += 1
                    write.append(row)
                elif old == row:
                    unchanged += 1
                elif append_only:
                    named = dict(zip(keys, row[:width], strict=True))
                    raise StoreError(
                        f"table {table}: the target's row {named} differs from the source's "
                        "(the target holds another store's rows; nothing of this batch was "
                        "written)")
                else:
                    updated += 1
                    write.append(row)
            if mirror:
                copied = {r[:group_width] for r in batch}
                for key in have:  # the target's rows of copied groups the source lacks
                    if key[:group_width] in copied:
                        where = " AND ".join(f'"{k}" = ?' for k in keys)
                        dst.execute(f"DELETE FROM {table} WHERE {where}", key)
                        removed += 1
            dst.executemany(insert, write)
            dst.commit()
        except BaseException:
            dst.rollback()
            raise
    if identity and added:
        dst.begin()
        try:
            dst.identity_used(table, identity)
            dst.commit()
        except BaseException:
            dst.rollback()
            raise
    return TableCopy(table, added, updated, unchanged, removed)


def copy_store(source: Any, target: Any) -> list[TableCopy]:
    """Copies every call, segment, event, scorecard, override and label of one store into
    another; safe to repeat.

    Args:
        source: `qa.store.StoreOptions` of the store to read (opened read-only).
        target: `qa.store.StoreOptions` of the store to write (created or upgraded).

    Returns:
        What was done, per table, in copy order.

    Raises:
        StoreError: Either store cannot be opened, the source's schema is not this
            program's, or the target holds other rows under the same ids.
    """
    from dataclasses import replace

    from qa.store import COPY_TABLES, check_schema, open_backend, upgrade

    if source.where == target.where:
        raise StoreError(f"{source.where}: source and target are the same store")
    src = open_backend(replace(source, read_only=True))
    try:
        try:
            check_schema(src)
        except StoreError as exc:
            raise StoreError(f"{source.where}: {exc} (upgrade it first: qa db migrate "
                             f"{source.where})") from None
        dst = open_backend(replace(target, read_only=False))
        try:
            dst.begin()
            try:
                upgrade(dst)
                dst.commit()
            except BaseException:
                dst.rollback()
                raise
            extra = {t for t in src.tables() - set(COPY_TABLES) - _NOT_COPIED
                     if not t.startswith(_DERIVED)}
            if extra:
                log.warning("tables not copied (not in qa.store.COPY_TABLES): %s",
                            ", ".join(sorted(extra)))
            report = []
            for table, (keys, append_only, identity) in COPY_TABLES.items():
                done = _copy_table(src, dst, table, keys, append_only, identity)
                log.info("%s: %d added, %d updated, %d unchanged, %d removed", table,
                         done.added, done.updated, done.unchanged, done.removed)
                report.append(done)
            return report
        except StoreError as exc:
            raise StoreError(f"copy to {target.where}: {exc}") from None
        except (*src.errors, *dst.errors) as exc:
            raise StoreError(f"copy to {target.where}: {exc}") from exc
        finally:
            dst.close()
    finally:
        src.close()
