"""`qa rules`: validate rule packs and try their phrases on text."""

from __future__ import annotations

import argparse
import sys

from qa.errors import QAError
from qa.rules import build_matcher, load_pack
from qa.types import Segment, Speaker


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa rules check` and `qa rules match`."""
    parser = subparsers.add_parser("rules", help="validate rule packs and try their phrases")
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate rule pack files (docs/rules.md)")
    check.add_argument("files", nargs="+", metavar="FILE", help="rule pack YAML files")
    check.set_defaults(func=run)
    match = sub.add_parser("match", help="show which phrases of a pack a text matches")
    match.add_argument("pack", metavar="PACK", help="rule pack YAML file")
    match.add_argument("text", metavar="TEXT", help="text as the recogniser wrote it")
    match.add_argument(
        "--speaker", choices=[s.value for s in Speaker], default="agent", help="who said it"
    )
    match.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs `qa rules ACTION`; returns 2 when any file is invalid."""
    if args.rules_command == "match":
        return _match(args)
    status = 0
    for path in args.files:
        try:
            pack = load_pack(path)
        except QAError as exc:
            print(f"qa: error: {exc}", file=sys.stderr)
            status = 2
            continue
        phrases = sum(len(f.phrases) for f in pack.forbidden)
        print(
            f"{path}: ok ({len(pack.steps)} steps, {phrases} forbidden phrases, "
            f"{len(pack.categories)} categories, language {pack.language}, "
            f"handle time {pack.handle_time.limit:g} s)"
        )
    return status


def _match(args: argparse.Namespace) -> int:
    pack = load_pack(args.pack)
    matcher = build_matcher(pack)
    segment = Segment("cli", Speaker(args.speaker), 0.0, 0.0, args.text)
    hits = matcher.scan(segment)
    for hit in hits:
        print(
            f"{hit.rule_id}\t{hit.kind.value}\t{hit.score:.2f}\t{hit.phrase}\t{hit.evidence_text}"
        )
    if not hits:
        print("no match")
    return 0
