"""`qa review`: list stored calls, show one (or write its HTML report), override a scorecard
item, export the results."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import stat
import sys
from itertools import zip_longest
from pathlib import Path

from qa.clock import format_clock
from qa.commands._output import match_note
from qa.db import mask_url, parse_location
from qa.errors import QAError, StoreError
from qa.report import format_started, render_call
from qa.store import CallListing, CallRecord, CallStore, StoreOptions, default_db_path

#: Columns of `qa review export --format csv`, one row per call.
CSV_FIELDS = (
    "call_id",
    "agent_id",
    "started",
    "duration",
    "category",
    "end_reason",
    "automatic_total",
    "total",
    "band",
    "events",
    "overrides",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa review` and its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        type=parse_location,
        default=None,
        metavar="PATH|URL",
        help="call store: an SQLite file or a postgresql://user:password@host/db URL "
        f"(default: $QA_DB or {mask_url(str(default_db_path()))})",
    )
    parser = subparsers.add_parser("review", help="review stored calls and their scorecards")
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", parents=[common], help="list recent calls with their scores")
    p.add_argument("--limit", type=int, default=100, help="most calls to list (default 100)")
    p.set_defaults(func=run, action=_list)

    p = sub.add_parser("show", parents=[common], help="transcript, events and scorecard")
    p.add_argument("call", metavar="CALL", help="call id")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report to FILE")
    p.set_defaults(func=run, action=_show)

    p = sub.add_parser(
        "override", parents=[common], help="change one scorecard item (kept as an audit trail)"
    )
    p.add_argument("call", metavar="CALL", help="call id")
    p.add_argument("item", metavar="ITEM", help="scorecard item (rule id)")
    p.add_argument("--points", type=float, required=True, help="the item's new points")
    p.add_argument("--reviewer", required=True, help="who makes the change")
    p.add_argument("--reason", required=True, help="why")
    p.set_defaults(func=run, action=_override)

    p = sub.add_parser(
        "label", parents=[common],
        help="say whether a segment counts for a rule (becomes an example for `qa rules tune`)",
    )
    p.add_argument("call", metavar="CALL", help="call id")
    p.add_argument("segment", metavar="SEGMENT",
                   help="the segment's number in `qa review show` (#N), or its exact text")
    p.add_argument("rule", metavar="RULE", help="rule id")
    p.add_argument("verdict", choices=("yes", "no"), help="it counts for the rule, or not")
    p.add_argument("--reviewer", required=True, help="who decides")
    p.add_argument("--reason", required=True, help="why")
    p.set_defaults(func=run, action=_label)

    p = sub.add_parser("labels", parents=[common], help="reviewers' labels, oldest first")
    p.add_argument("--rule", help="only this rule's")
    p.set_defaults(func=run, action=_labels)

    p = sub.add_parser("export", parents=[common], help="one row per call with its score")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="default csv")
    p.add_argument("--output", type=Path, metavar="FILE", help="write to FILE, not stdout")
    p.set_defaults(func=run, action=_export)


def run(args: argparse.Namespace) -> int:
    """Opens the store named by `--db` and runs the chosen action."""
    path = args.db if args.db is not None else default_db_path()
    if isinstance(path, Path) and not path.exists():
        # Reading commands must not leave an empty database behind a mistyped path.
        raise StoreError(f"{path}: no call store here (set --db or $QA_DB)")
    # Only `override` and `label` write; every other action opens the file read-only (no
    # chmod, no WAL switch, no tables created), and works on a store the user may not write.
    writes = args.action in (_override, _label)
    if writes:
        # Refuse a file that is not a call store before opening it for writing.
        CallStore(StoreOptions(path=path, read_only=True)).close()
    with CallStore(StoreOptions(path=path, read_only=not writes)) as store:
        return args.action(store, args)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _list(store: CallStore, args: argparse.Namespace) -> int:
    calls = store.calls(limit=args.limit)
    rows = [("CALL", "STARTED (UTC)", "AGENT", "DURATION", "CATEGORY", "SCORE", "BAND", "EVENTS")]
    for c in calls:
        rows.append(
            (
                c.call_id,
                format_started(c.started_at),
                c.agent_id or "-",
                "running" if c.duration is None else format_clock(c.duration, 1),
                c.category or "-",
                _num(c.total) + ("*" if c.overrides else ""),
                c.band or "-",
                str(c.events),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if any(c.overrides for c in calls):
        print("* score includes reviewer overrides")
    return 0


def _show(store: CallStore, args: argparse.Namespace) -> int:
    record = store.call(args.call)
    if args.html is not None:
        _write(args.html, render_call(record))
        print(f"wrote {args.html}")
        return 0
    print(_describe(record), end="")
    return 0


def _describe(record: CallRecord) -> str:
    info = record.info
    out = [
        f"call {info.call_id}  agent {info.agent_id or '-'}  "
        f"started {format_started(info.started_at)}  "
        f"duration {'running' if record.duration is None else format_clock(record.duration, 1)}  "
        f"category {record.category or '-'}  ended {record.end_reason or '-'}",
        "",
        "Transcript",
    ]
    out += [
        f"  {format_clock(s.start, 1):>7}  {s.speaker:<8}  {s.text.strip()}  #{n}"
        for n, s in enumerate(record.segments, 1)
    ]
    out += ["", "Events"]
    out += [
        f"  {format_clock(e.time, 1):>7}  {e.kind}  {e.rule_id}  {e.severity}  {e.points:+g}"
        + (f'  "{e.evidence}"' if e.evidence else "")
        + (f"  [{match_note(e)}]" if e.match else "")
        + (f"  {e.message}" if e.message else "")
        for e in record.events
    ]
    out.append("")
    if record.scorecard is None or record.effective is None:
        out.append("Scorecard: not scored yet")
    else:
        auto, eff = record.scorecard, record.effective
        line = f"Scorecard: {eff.total:g} (band {eff.band})"
        if record.overrides:
            line += f"; automatic {auto.total:g} (band {auto.band})"
        out.append(line)
        for a, e in zip(auto.items, eff.items, strict=True):
            pts = f"{e.points_awarded:g}/{a.points_possible:g}"
            if a.points_awarded != e.points_awarded:
                pts += f" (automatic {a.points_awarded:g})"
            evidence = "; ".join(
                f'"{x}"' + (f" @{format_clock(t, 1)}" if t is not None else "")
                for x, t in zip_longest(a.evidence, a.times)
                if x is not None
            )
            out.append(
                f"  {a.rule_id}  {a.description}  {pts}" + (f"  {evidence}" if evidence else "")
            )
    if record.overrides:
        out += ["", "Overrides"]
        out += [
            f"  {format_started(o.created_at)}  {o.rule_id}  {o.old_points:g} -> "
            f"{o.new_points:g}  by {o.reviewer}: {o.reason}"
            for o in record.overrides
        ]
    return "\n".join(out) + "\n"


def _override(store: CallStore, args: argparse.Namespace) -> int:
    o = store.add_override(
        args.call, args.item, points=args.points, reviewer=args.reviewer, reason=args.reason
    )
    line = f"{o.call_id} {o.rule_id}: {o.old_points:g} -> {o.new_points:g} by {o.reviewer}"
    record = store.call(args.call)
    eff = record.effective
    if eff is not None:
        line += f"; score now {eff.total:g} (band {eff.band})"
    print(line)
    for label in _labels_from_override(store, record, o.rule_id, o.new_points, args):
        print(f"  labelled segment #{label.segment} '{label.text}' {label.verdict} for "
              f"{label.rule_id} (an example for `qa rules tune --db`)")
    return 0


def _labels_from_override(store: CallStore, record: CallRecord, rule_id: str, points: float,
                          args: argparse.Namespace) -> list:
    """A reviewer who takes back what a matched phrase or intent gave or cost says that its
    segment does not count for the rule: each such segment becomes a `no` label."""
    if record.scorecard is None:
        return []
    item = next((i for i in record.scorecard.items if i.rule_id == rule_id), None)
    if item is None:
        return []
    wrong_hit = [
        e for e in record.events
        if e.rule_id == rule_id and e.match and (
            (e.points < 0 and points >= item.points_possible)  # a false alarm forgiven
            or (e.points > 0 and points <= 0)  # a step credited on words that did not do it
        )
    ]
    labels = []
    for event in wrong_hit:
        number = next(
            (n for n, s in enumerate(record.segments, 1)
             if s.speaker == event.speaker and s.start <= event.time + 1e-3
             and event.time <= s.end + 1e-3),
            None,
        )
        if number is not None:
            labels.append(store.add_label(
                record.info.call_id, number, rule_id, "no", reviewer=args.reviewer,
                reason=f"override: {args.reason}",
            ))
    return labels


def _label(store: CallStore, args: argparse.Namespace) -> int:
    label = store.add_label(
        args.call, args.segment.lstrip("#"), args.rule, args.verdict, reviewer=args.reviewer,
        reason=args.reason,
    )
    print(f"{label.call_id} #{label.segment} {label.rule_id}: {label.verdict} by "
          f"{label.reviewer} ('{label.text}')")
    return 0


def _labels(store: CallStore, args: argparse.Namespace) -> int:
    for label in store.labels(args.rule):
        print(f"{format_started(label.created_at)}  {label.call_id} #{label.segment}  "
              f"{label.rule_id}  {label.verdict}  {label.speaker}: {label.text}  "
              f"(by {label.reviewer}: {label.reason})")
    return 0


def _summary_row(c: CallListing) -> dict[str, object]:
    return {
        "call_id": c.call_id,
        "agent_id": c.agent_id,
        "started": format_started(c.started_at),
        "duration": c.duration,
        "category": c.category,
        "end_reason": c.end_reason,
        "automatic_total": c.automatic_total,
        "total": c.total,
        "band": c.band,
        "events": c.events,
        "overrides": c.overrides,
    }


def _export(store: CallStore, args: argparse.Namespace) -> int:
    summaries = store.calls(limit=None)
    if args.format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_summary_row(c) for c in summaries)
        text = buf.getvalue()
    else:
        rows = []
        for c in summaries:
            row = _summary_row(c)
            record = store.call(c.call_id)
            auto, eff = record.scorecard, record.effective
            row["items"] = (
                []
                if auto is None or eff is None
                else [
                    {
                        "rule_id": a.rule_id,
                        "description": a.description,
                        "points_possible": a.points_possible,
                        "automatic": a.points_awarded,
                        "points": e.points_awarded,
                        "evidence": list(a.evidence),
                        "times": list(a.times),
                    }
                    for a, e in zip(auto.items, eff.items, strict=True)
                ]
            )
            rows.append(row)
        text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        _write(args.output, text)
    return 0


def _write(path: Path, text: str) -> None:
    """Writes an export or report owner-only (0600), like the database it comes from."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            info = os.fstat(fd)
            # An older file keeps its mode on O_CREAT; tighten it (not a device or a pipe).
            if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
            handle.write(text)
    except OSError as exc:
        raise QAError(f"{path}: cannot write: {exc.strerror}") from exc
