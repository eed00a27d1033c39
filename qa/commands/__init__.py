"""Subcommands of `qa`: each module defines `register(subparsers)` and sets `func`."""
