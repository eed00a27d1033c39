"""`qa recordings`: apply the retention policy, or show where a call's recording is."""

from __future__ import annotations

import argparse
from pathlib import Path

from qa.commands._output import dumps


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "recordings",
        help="call recordings: retention and lookup",
        description="Call recordings (docs/recordings.md). `prune` deletes calls older than "
        "the retention period with their recordings (audit trails are kept); `show` prints "
        "where a call's recording is and what was masked in it.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    prune = actions.add_parser("prune", help="delete calls and recordings past retention")
    prune.add_argument("--config", help="YAML run settings (db, recording_dir, retention_days)")
    prune.add_argument("--db", help="call store (default: $QA_DB or ~/.local/share/qa/calls.db)")
    prune.add_argument("--recording-dir", metavar="DIR",
                       help="recordings folder (default: recordings/ beside the call store)")
    prune.add_argument("--retention-days", type=int, metavar="DAYS",
                       help="keep this many days (default: the config's, else 90; 0 = all)")
    prune.add_argument("--json", action="store_true", help="print the result as JSON")
    prune.set_defaults(func=run_prune)
    show = actions.add_parser("show", help="where a call's recording is")
    show.add_argument("call", metavar="CALL", help="call id")
    show.add_argument("--db", help="call store (default: $QA_DB or ~/.local/share/qa/calls.db)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)


def run_prune(args: argparse.Namespace) -> int:
    from qa.config import RunConfig, load_config
    from qa.recordings import RecordingOptions, default_directory, prune
    from qa.store import CallStore, StoreOptions

    config = load_config(args.config) if args.config else RunConfig()
    db = args.db or config.db
    days = args.retention_days if args.retention_days is not None else config.retention_days
    options = RecordingOptions(retention_days=days)  # validates the number of days
    store_options = StoreOptions(path=Path(db).expanduser()) if db else StoreOptions()
    directory = args.recording_dir or config.recording_dir
    directory = Path(directory).expanduser() if directory else default_directory(
        store_options.path)
    with CallStore(store_options) as store:
        result = prune(store, directory, options.retention_days)
    if args.json:
        print(dumps({"calls": result.calls, "files": result.files, "bytes": result.bytes,
                     "failed": result.failed, "retention_days": days}))
    elif days <= 0:
        print("# retention is 0 days: everything is kept")
    else:
        print(f"# deleted {result.calls} calls and {result.files} recordings "
              f"({result.bytes} bytes) older than {days} days"
              + (f"; {result.failed} could not be deleted (see the log)" if result.failed else ""))
    return 1 if result.failed else 0


def run_show(args: argparse.Namespace) -> int:
    from qa.errors import StoreError
    from qa.store import CallStore, StoreOptions

    options = StoreOptions(read_only=True)
    if args.db:
        options = StoreOptions(path=Path(args.db).expanduser(), read_only=True)
    with CallStore(options) as store:
        store.call(args.call)  # CallNotFoundError names an unknown call
        recording = store.recording(args.call)
    if recording is None:
        raise StoreError(f"call '{args.call}' has no recording (not recorded, or pruned)")
    spans = [{"channel": str(s.channel), "start": round(s.start, 2), "end": round(s.end, 2),
              "kind": s.kind} for s in recording.masked_spans]
    if args.json:
        print(dumps({"call": recording.call_id, "path": recording.path,
                     "codec": recording.codec, "sample_rate": recording.sample_rate,
                     "channels": recording.channels, "duration": round(recording.duration, 3),
                     "bytes": recording.bytes, "masked": spans}))
        return 0
    print(f"{recording.path}\n# {recording.codec}, {recording.channels} channels, "
          f"{recording.sample_rate} Hz, {recording.duration:.1f} s, {recording.bytes} bytes")
    for span in spans:
        print(f"# masked {span['kind']} on {span['channel']}: {span['start']:.2f}-"
              f"{span['end']:.2f} s")
    return 0
