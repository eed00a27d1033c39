"""`qa serve`: the review workspace in a browser (see docs/workspace.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qa.db import mask_url, parse_location
from qa.store import default_db_path


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `qa serve`."""
    parser = sub.add_parser(
        "serve", help="the review workspace: calls, audio, scorecards, disputes, calibration",
        description="Serve the review workspace over HTTP (HTTPS with --tls-cert/--tls-key). "
        "It listens on the loopback unless --host says otherwise; create accounts with "
        "`qa users add` first.")
    parser.add_argument("--db", type=parse_location, default=None, metavar="PATH|URL",
                        help="call store: an SQLite file or a postgresql:// URL (default: "
                        f"$QA_DB or {mask_url(str(default_db_path()))})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any)")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate chain")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="TLS private key")
    parser.add_argument("--dispute-days", type=float, default=7.0,
                        help="days a reviewer has to decide a dispute (default 7)")
    parser.add_argument("--disputes-per-call", type=int, default=3,
                        help="most disputes an agent may open on one call (default 3)")
    parser.add_argument("--address-failures", type=int, default=30, metavar="N",
                        help="failed logins one client address may make per minute before "
                        "its logins are refused for the rest of it (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qa.web import AccountOptions, DisputeOptions, WebOptions, serve

    options = WebOptions(
        db=workspace_store(args.db), host=args.host,
        port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
        accounts=AccountOptions(address_failures=max(1, args.address_failures)),
        disputes=DisputeOptions(deadline_days=args.dispute_days,
                                per_call=args.disputes_per_call))

    def ready(url: str) -> None:
        print(f"qa serve: listening on {url}", flush=True)
        if options.host not in ("127.0.0.1", "::1", "localhost") and not options.tls:
            print("qa serve: warning: serving beyond this machine without TLS; pass "
                  "--tls-cert and --tls-key", file=sys.stderr, flush=True)

    serve(options, ready)
    return 0


def workspace_store(db: Path | str | None) -> Path | str:
    """The store the workspace serves: `--db` (an SQLite file or a PostgreSQL URL), else the
    default (`$QA_DB` or the file in the data folder)."""
    return db if db is not None else default_db_path()
