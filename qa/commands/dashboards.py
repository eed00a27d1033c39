"""`qa dashboards`: regenerate (or check) the Grafana dashboards from `qa.dashboards`."""

from __future__ import annotations

import argparse
from pathlib import Path

from qa import dashboards


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa dashboards`."""
    parser = subparsers.add_parser(
        "dashboards",
        help="write the Grafana dashboards generated from code",
        description="Writes grafana/dashboards/*.json from qa/dashboards.py. With --check, "
        "writes nothing and exits 1 if a committed file differs from the code.",
    )
    parser.add_argument("--out", type=Path, default=dashboards.DEFAULT_DIR,
                        help="output folder (default: grafana/dashboards of this checkout)")
    parser.add_argument("--check", action="store_true",
                        help="only report dashboards that are out of date")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = dashboards.stale_dashboards(args.out)
        for name in stale:
            print(f"{args.out / name}: out of date (run: qa dashboards)")
        return 1 if stale else 0
    for path in dashboards.write_dashboards(args.out):
        print(f"wrote {path}")
    return 0
