"""`qa score`: replay a recording through the live pipeline and print its events and scorecard."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from qa.commands._output import dumps, event_dict, event_line, scorecard_dict, scorecard_lines
from qa.errors import QAError
from qa.models import DEFAULT_MODEL
from qa.pipeline import PipelineOptions
from qa.types import CallSummary, Event, PipelineListener


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "score",
        help="score a recorded call against a rule pack",
        description="Replay a WAV through the same pipeline as live calls, as fast as it goes, "
        "and print the rule events (time, kind, rule, evidence) and the scorecard.",
    )
    parser.add_argument("file", metavar="FILE", help="recording: WAV, FLAC, Ogg/Opus, MP3, M4A "
                        "(stereo: agent, customer)")
    parser.add_argument("--rules", required=True, metavar="PACK", help="rule pack (YAML)")
    parser.add_argument("--language", choices=("en", "zh", "auto"),
                        help="default: the rule pack's language")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or directory")
    parser.add_argument("--agent", default="", help="agent id recorded on the call")
    parser.add_argument("--db", metavar="PATH|URL",
                        help="also store the call, its events and scorecard here (an SQLite "
                        "file or a postgresql:// URL)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document with `events` and `scorecard`")
    parser.set_defaults(func=run)


class CallResults(PipelineListener):
    """Collects the events and summaries of the calls it sees."""

    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = {}
        self.summaries: dict[str, CallSummary] = {}
        self._lock = threading.Lock()

    def event(self, event: Event) -> None:
        with self._lock:
            self.events.setdefault(event.call_id, []).append(event)

    def call_ended(self, summary: CallSummary) -> None:
        with self._lock:
            self.summaries[summary.call_id] = summary


def run(args: argparse.Namespace) -> int:
    from qa.monitor import Monitor, MonitorOptions
    from qa.sources.file import FileOptions, FileSource

    source = FileSource(FileOptions(Path(args.file), agent_id=args.agent))
    store = None
    if args.db:
        from qa.db import parse_location
        from qa.store import StoreOptions

        store = StoreOptions(path=parse_location(args.db))
    language = None if args.language in (None, "auto") else args.language
    results = CallResults()
    options = MonitorOptions(pipeline=PipelineOptions(language=language), model=args.model,
                             rules=Path(args.rules), store=store)
    with Monitor(options, [results]) as monitor:
        monitor.run([source])
    summary = results.summaries[source.call_id]
    events = sorted(results.events.get(source.call_id, []), key=lambda e: e.time)
    scorecard = summary.scorecard
    if scorecard is None:  # the rules failed on this call (logged by the pipeline)
        raise QAError(f"{args.file}: the rules failed on this call; no scorecard (see the log)")
    if args.json:
        print(dumps({
            "call": source.call_id, "duration": round(summary.duration, 2),
            "category": summary.category, "events": [event_dict(e) for e in events],
            "scorecard": scorecard_dict(scorecard),
        }))
        return 0
    print(f"# {args.file}: {summary.duration:.1f} s, category {summary.category or '-'}")
    for event in events:
        print(event_line(event))
    print("\n".join(scorecard_lines(scorecard)))
    return 0
