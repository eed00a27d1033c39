"""`qa users`: accounts of the review workspace (add, list, disable, enable)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from qa.db import mask_url, parse_location
from qa.errors import WorkspaceError
from qa.report import format_started
from qa.store import CallStore, StoreOptions, default_db_path


def register(sub: argparse._SubParsersAction) -> None:
    """Adds `qa users` and its actions."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", type=parse_location, default=None, metavar="PATH|URL",
                        help="call store: an SQLite file or a postgresql:// URL (default: "
                        f"$QA_DB or {mask_url(str(default_db_path()))})")
    parser = sub.add_parser("users", help="accounts of the review workspace (qa serve)")
    actions = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    p = actions.add_parser("add", parents=[common], help="create an account",
                           description="The password is read from $QA_PASSWORD if set, "
                           "else asked for twice on the terminal (never on the command line).")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=("agent", "reviewer", "supervisor", "admin"))
    p.add_argument("--agent-id", default="", help="for an agent: the agent id their calls carry")
    p.set_defaults(func=run, action=_add)
    p = actions.add_parser("list", parents=[common], help="list accounts")
    p.set_defaults(func=run, action=_list)
    for name, verb in (("disable", "disable an account and end its sessions"),
                       ("enable", "enable a disabled account")):
        p = actions.add_parser(name, parents=[common], help=verb)
        p.add_argument("username")
        p.set_defaults(func=run, action=_disable if name == "disable" else _enable)


def run(args: argparse.Namespace) -> int:
    from qa.commands.serve import workspace_store
    from qa.web.workspace import Workspace

    path = workspace_store(args.db)
    with CallStore(StoreOptions(path=path)):  # creates or upgrades the tables
        pass
    workspace = Workspace(path)
    try:
        return args.action(workspace, args)
    finally:
        workspace.close()


def _password() -> str:
    if "QA_PASSWORD" in os.environ:
        return os.environ["QA_PASSWORD"]
    if not sys.stdin.isatty():
        raise WorkspaceError("no password: set $QA_PASSWORD or run on a terminal")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise WorkspaceError("the passwords differ")
    return first


def _add(workspace, args: argparse.Namespace) -> int:
    user = workspace.add_user(args.username, args.role, _password(), agent_id=args.agent_id)
    workspace.audit("cli", "user_add", detail=f"{user.username} as {user.role}")
    agent = f", agent {user.agent_id}" if user.agent_id else ""
    print(f"added {user.username} ({user.role}{agent})")
    return 0


def _list(workspace, args: argparse.Namespace) -> int:
    print(f"{'USER':20} {'ROLE':11} {'AGENT ID':14} {'STATE':9} CREATED (UTC)")
    for u in workspace.users():
        state = "disabled" if u.disabled else "active"
        print(f"{u.username:20} {u.role:11} {u.agent_id or '-':14} {state:9} "
              f"{format_started(u.created_at)}")
    return 0


def _disable(workspace, args: argparse.Namespace) -> int:
    workspace.set_disabled(args.username, True)
    workspace.audit("cli", "user_disable", detail=args.username)
    print(f"disabled {args.username}")
    return 0


def _enable(workspace, args: argparse.Namespace) -> int:
    workspace.set_disabled(args.username, False)
    workspace.audit("cli", "user_enable", detail=args.username)
    print(f"enabled {args.username}")
    return 0
