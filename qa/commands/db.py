"""`qa db`: the call store's schema and moving a store between SQLite and PostgreSQL.

`qa db migrate DB` creates or upgrades the schema (what any writing command does when it
opens a store, alone, for an operator who upgrades before starting the nodes).
`qa db copy --from SRC --to DST` copies every call with its ids, overrides and labels, either
way between a file and a `postgresql://` URL; it is safe to run again (see `qa.db.copy`).
"""

from __future__ import annotations

import argparse

from qa.db import parse_location


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `qa db` and its subcommands."""
    parser = sub.add_parser("db", help="call store schema upgrades and copies between databases")
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    p = actions.add_parser("migrate", help="create or upgrade the store's schema",
                           description="Upgrade the call store's schema to this program's "
                           "version (an empty PostgreSQL database gets the whole schema).")
    p.add_argument("db", metavar="PATH|URL", type=parse_location,
                   help="an SQLite file or a postgresql://user:password@host/db URL")
    p.set_defaults(func=_migrate)

    p = actions.add_parser(
        "copy", help="copy a store into another (SQLite <-> PostgreSQL), keeping ids",
        description="Copy every call, segment, event, scorecard, override and label from one "
        "store into another, keeping their ids. Running it again copies only what is new.")
    p.add_argument("--from", dest="source", required=True, metavar="PATH|URL",
                   type=parse_location, help="the store to read")
    p.add_argument("--to", dest="target", required=True, metavar="PATH|URL",
                   type=parse_location, help="the store to write (created if missing)")
    p.set_defaults(func=_copy)


def _migrate(args: argparse.Namespace) -> int:
    from qa.store import SCHEMA_VERSION, StoreOptions, migrate

    options = StoreOptions(path=args.db)
    found = migrate(options)
    if found == SCHEMA_VERSION:
        print(f"{options.where}: schema version {SCHEMA_VERSION}, nothing to do")
    elif found == 0:
        print(f"{options.where}: created schema version {SCHEMA_VERSION}")
    else:
        print(f"{options.where}: upgraded schema version {found} -> {SCHEMA_VERSION}")
    return 0


def _copy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qa.db.copy import copy_store
    from qa.errors import StoreError
    from qa.store import StoreOptions

    source = StoreOptions(path=args.source)
    if not source.is_postgresql and not Path(source.path).exists():
        raise StoreError(f"{source.where}: no call store here")
    target = StoreOptions(path=args.target)
    report = copy_store(source, target)
    print(f"{source.where} -> {target.where}")
    print(f"{'TABLE':<12} {'ADDED':>7} {'UPDATED':>7} {'SAME':>7} {'REMOVED':>7}")
    for t in report:
        print(f"{t.table:<12} {t.added:>7} {t.updated:>7} {t.unchanged:>7} {t.removed:>7}")
    return 0
