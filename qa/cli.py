"""The `qa` command line: one subcommand per module in `qa.commands`.

This is the edge of the program: it parses arguments, builds the option dataclasses once,
and turns any `QAError` into one line on standard error and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from qa import commands, logs
from qa.errors import QAError

log = logging.getLogger("qa.cli")


def build_parser() -> argparse.ArgumentParser:
    """Builds the parser with every subcommand found in `qa.commands`."""
    parser = argparse.ArgumentParser(
        prog="qa", description="Real-time speech QA and monitoring for call centres."
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"qa.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.install()  # agent tokens in request lines (websockets at -vv) never reach the log
    try:
        return int(args.func(args) or 0)
    except QAError as exc:
        print(f"qa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # The machine's failures (a full disk, a vanished mount, no permission) are one line
        # too: the user acts on them, a traceback would only hide the message.
        print(f"qa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
