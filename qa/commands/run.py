"""`qa run`: monitor live calls from sound cards, RTP streams or replayed files."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from qa.commands._output import (
    clock,
    dumps,
    event_dict,
    event_line,
    scorecard_dict,
    scorecard_lines,
    segment_dict,
    segment_line,
)
from qa.config import RunConfig, check_ports, load_config
from qa.errors import ConfigError
from qa.pipeline import PipelineOptions
from qa.redact import redact
from qa.types import CallInfo, CallSummary, Event, PipelineListener, Segment, Speaker

log = logging.getLogger("qa.commands.run")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="monitor live calls",
        description="Capture calls from sound cards, RTP streams or WAV files, transcribe them "
        "as they happen, check them against a rule pack and print each final segment and rule "
        "event. Runs until Ctrl-C or until every source ends, then prints a summary (and the "
        "scorecard) per call.",
    )
    parser.add_argument(
        "--source", action="append", default=None, metavar="SOURCE",
        help="soundcard[:DEVICE], rtp://HOST:PORT[,PORT2] or file:PATH[?realtime=1] "
        "(repeatable)",
    )
    parser.add_argument("--config", help="YAML file with the run settings (see qa/config.py)")
    parser.add_argument("--agent", help="agent id recorded on the calls")
    parser.add_argument("--language", choices=("en", "zh", "auto"),
                        help="default: the rule pack's language, else auto")
    parser.add_argument("--model", help="model name or directory (default: base)")
    parser.add_argument("--workers", type=int,
                        help="transcription workers, each decoding a batch at once on one core "
                        "(default 2: set it to the number of cores; docs/capacity.md)")
    parser.add_argument("--asr", metavar="URL",
                        help="recognise on `qa worker` processes through NATS JetStream "
                        "(nats://HOST:4222) instead of loading the model here")
    parser.add_argument("--node", help="this capture node's name with --asr (default: "
                        "host name and process id)")
    parser.add_argument("--rules", metavar="PACK", help="rule pack (YAML) to check calls against")
    parser.add_argument("--db", metavar="PATH|URL",
                        help="call store: an SQLite file or a postgresql://user:password@host/db "
                        "URL shared by many nodes (default: $QA_DB or "
                        "~/.local/share/qa/calls.db)")
    parser.add_argument("--no-recording", dest="recording", action="store_false", default=None,
                        help="do not keep the calls' audio (default: kept, masked where the "
                        "transcript is redacted; docs/recordings.md)")
    parser.add_argument("--recording-dir", metavar="DIR",
                        help="where recordings go (default: recordings/ beside the call store)")
    parser.add_argument("--retention-days", type=int, metavar="DAYS",
                        help="delete calls and recordings older than this at start "
                        "(default 90; 0 = never)")
    parser.add_argument("--no-store", dest="store", action="store_false", default=None,
                        help="do not store calls")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics on this port (0 = any free port)")
    parser.add_argument("--prompts-port", type=int,
                        help="serve the agent prompt page and websocket on this port "
                        "(0 = any free port)")
    parser.add_argument("--serve-port", type=int, metavar="PORT",
                        help="also serve the review workspace (`qa serve`) from this process "
                        "on 127.0.0.1:PORT, its live floor woken by each write (0 = any port)")
    parser.add_argument("--json", action="store_true", default=None, help="print JSON lines")
    parser.add_argument("--show-pii", action="store_true",
                        help="print transcripts, evidence and key presses unredacted "
                        "(default: redacted as in the store; logged as a warning)")
    parser.set_defaults(func=run)


def settings(args: argparse.Namespace) -> RunConfig:
    """The configuration file (if any) with the command line's settings on top."""
    config = load_config(args.config) if args.config else RunConfig()
    overrides = {
        "sources": tuple(args.source) if args.source else None,
        "agent": args.agent,
        "language": args.language,
        "model": args.model,
        "workers": args.workers,
        "json": args.json,
        "rules": args.rules,
        "db": args.db,
        "store": args.store,
        "metrics_port": args.metrics_port,
        "prompts_port": args.prompts_port,
        "recording": args.recording,
        "recording_dir": args.recording_dir,
        "retention_days": args.retention_days,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if not config.sources:
        raise ConfigError(args.config or "command line", "no source given", field="source")
    return config


def monitor_options(config: RunConfig, sources=()):
    """Builds the service options from a run configuration."""
    from qa.monitor import MonitorOptions

    store = None
    if config.store:
        from qa.db import parse_location
        from qa.store import StoreOptions

        store = StoreOptions(path=parse_location(config.db)) if config.db else StoreOptions()
    prompts = None
    if config.prompts_port is not None:
        from qa.prompts import PromptOptions

        prompts = PromptOptions(host=config.prompts_host, port=config.prompts_port,
                                tokens=config.tokens)
    from qa.recordings import RecordingOptions

    recordings = None
    # `--no-store` keeps nothing, recordings included, unless a recording folder is named.
    if config.store or config.recording_dir:
        recordings = RecordingOptions(
            enabled=config.recording,
            directory=Path(config.recording_dir).expanduser() if config.recording_dir else None,
            retention_days=config.retention_days, codec=config.recording_codec,
        )
    # `auto`: the rule pack's language when it names one, else detection per utterance.
    language = None if config.language == "auto" else config.language
    # Shedding by queue age is for live calls. A file replayed as fast as possible is a batch
    # job whose every utterance is decoded in full, and it fills the queue by design, so
    # beside it the queue age says nothing: the policy applies only when every source is live.
    from qa.sources.file import FileSource

    live = all(not (isinstance(s, FileSource) and not s.options.realtime) for s in sources)
    return MonitorOptions(
        pipeline=PipelineOptions(workers=config.workers, queue_size=config.queue_size,
                                 language=language, overload=_overload(config, live)),
        model=config.model,
        recordings=recordings,
        rules=Path(config.rules) if config.rules else None,
        store=store,
        prompts=prompts,
        metrics_port=config.metrics_port,
        metrics_host=config.metrics_host,
        agents=tuple(dict.fromkeys(
            [config.agent, *(agent for agent, _ in config.tokens),
             *(getattr(getattr(s, "options", None), "agent_id", "") for s in sources)]
        )),
    )


def remote_options(url: str, node: str | None):
    """The remote recognition options for `--asr URL` (and `--node`)."""
    from qa.cluster.remote import RemoteOptions

    if not url.startswith(("nats://", "tls://")):
        raise ConfigError("command line", f"not a NATS URL: {url!r} (nats://HOST:4222)",
                          field="asr")
    return RemoteOptions(url=url, node=node) if node else RemoteOptions(url=url)


class Printer(PipelineListener):
    """Prints segments and events as they arrive and a summary per call (the CLI's output).

    Personal data is redacted (`qa.redact`) in what is printed, as in the store: a console
    is scrolled back, piped to files and pasted into tickets. Key presses are printed as `*`
    for the same reason: during identity checks they are PINs, dates of birth and card
    numbers, and telling those moments apart is not worth the risk. `show_pii` prints all
    of it in clear.
    """

    def __init__(self, as_json: bool, many_calls: bool, show_pii: bool = False) -> None:
        self._json = as_json
        self._many = many_calls
        self._redact = not show_pii
        self._lock = threading.Lock()
        self.summaries: list[CallSummary] = []

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)

    def ready(self, sources: list[str], endpoints: dict[str, str]) -> None:
        """Says that the model is loaded and every source is open (sockets bound)."""
        if self._json:
            self._print(dumps({"type": "ready", "sources": sources, **endpoints}))
            return
        self._print(f"# ready: {', '.join(sources)}")
        for what, where in endpoints.items():
            self._print(f"# {what}: {where}")

    def call_started(self, call: CallInfo) -> None:
        if self._json:
            self._print(dumps({"type": "call_started", "call": call.call_id,
                               "agent": call.agent_id, "source": call.source}))
        else:
            self._print(f"# call {call.call_id} started ({call.source})")

    def segment(self, segment: Segment, latency: float) -> None:
        if self._redact:
            segment = replace(segment, text=redact(segment.text, segment.language or None).text)
        if self._json:
            self._print(dumps({"type": "segment", **segment_dict(segment),
                               "latency": round(latency, 3)}))
        else:
            self._print(segment_line(segment, call=self._many))

    def event(self, event: Event) -> None:
        if self._redact:
            event = replace(event, evidence=redact(event.evidence).text,
                            message=redact(event.message).text)
        if self._json:
            self._print(dumps({"type": "event", **event_dict(event)}))
        else:
            self._print(event_line(event, call=self._many))

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float) -> None:
        if self._redact:
            digit = "*"
        if self._json:
            self._print(dumps({"type": "dtmf", "call": call_id, "channel": str(channel),
                               "digit": digit, "time": round(time, 2)}))
        else:
            self._print(f"# call {call_id}: key {digit} on {channel} at {clock(time)}")

    def call_ended(self, summary: CallSummary) -> None:
        with self._lock:
            self.summaries.append(summary)
        if self._redact and summary.scorecard is not None:
            card = summary.scorecard
            items = tuple(replace(i, evidence=tuple(redact(e).text for e in i.evidence))
                          for i in card.items)
            summary = replace(summary, scorecard=replace(card, items=items))
        speech = {str(s): round(v, 2) for s, v in summary.speech}
        if self._json:
            self._print(dumps({
                "type": "summary", "call": summary.call_id, "agent": summary.agent_id,
                "reason": summary.reason, "duration": round(summary.duration, 2),
                "speech": speech, "utterances": summary.utterances,
                "segments": summary.segments, "dropped_utterances": summary.dropped_utterances,
                "dropped_audio": round(summary.gap_seconds, 3),
                "latency_p50": round(summary.latency_p50, 3),
                "latency_p95": round(summary.latency_p95, 3),
                "events": summary.events, "category": summary.category,
                "scorecard": scorecard_dict(summary.scorecard) if summary.scorecard else None,
            }))
            return
        per_speaker = ", ".join(f"{s} {v:.1f} s" for s, v in speech.items())
        lines = [
            f"# call {summary.call_id} ended ({summary.reason}): {summary.duration:.1f} s, "
            f"speech {per_speaker}, {summary.utterances} utterances, "
            f"{summary.dropped_utterances} dropped, {summary.gap_seconds:.2f} s audio missing, "
            f"latency p50 {summary.latency_p50:.2f} s p95 {summary.latency_p95:.2f} s"
        ]
        if summary.category:
            lines.append(f"# category: {summary.category}")
        if summary.scorecard is not None:
            lines += scorecard_lines(summary.scorecard)
        self._print("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    from qa.monitor import Monitor
    from qa.sources.spec import open_source

    config = settings(args)
    check_ports(config, args.config or "command line")  # before the model loads (a minute)
    sources = [open_source(spec, agent_id=config.agent) for spec in config.sources]
    if args.show_pii:
        log.warning("--show-pii: transcripts, evidence and key presses are printed unredacted")
    printer = Printer(config.json, many_calls=len(sources) > 1, show_pii=args.show_pii)
    options = monitor_options(config, sources)
    if args.asr:
        options = replace(options, asr=remote_options(args.asr, args.node))
    workspace = _workspace(args.serve_port, options)
    listeners = [printer] + ([workspace.listener] if workspace else [])
    with Monitor(options, listeners) as monitor:
        endpoints = {}
        if workspace is not None:
            endpoints["workspace"] = workspace.url
        if args.asr:
            endpoints["asr"] = args.asr
        if monitor.metrics_server is not None:
            endpoints["metrics"] = monitor.metrics_server.url
        if monitor.prompt_server is not None:
            endpoints["prompts"] = f"http://{config.prompts_host}:{monitor.prompt_server.port}"
        if monitor.store is not None:
            endpoints["store"] = monitor.store.options.where  # no password
        if monitor.recorder is not None:
            endpoints["recordings"] = str(monitor.recorder.directory)
        stop = threading.Event()
        _on_stop_signals(stop)
        printer.ready([source.name for source in sources], endpoints)
        monitor.run(sources, stop)
    if workspace is not None:  # a daemon thread: an error above ends it with the process
        workspace.stop()
    if stop.is_set() or not monitor.closed_cleanly:
        # A decode may still run in a worker thread; freeing the model under it at interpreter
        # exit would crash the process. And after a stop signal the interpreter's teardown
        # (freeing the model and the libraries: up to a second on a busy machine) would come
        # on top of the stop's budget, which must end the process within 5 s. Everything is
        # printed and stored: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    return 0


def _workspace(port: int | None, options):
    """The review workspace served from this process (`--serve-port`), started, or None."""
    if port is None:
        return None
    from qa.commands.serve import workspace_store
    from qa.errors import ConfigError
    from qa.web import WebOptions
    from qa.web.server import WorkspaceThread

    if options.store is None:
        raise ConfigError("command line", "--serve-port needs the call store (drop --no-store)",
                          field="serve-port")
    from qa.store import CallStore

    CallStore(options.store).close()  # created (or upgraded) before the server reads it
    workspace = WorkspaceThread(WebOptions(db=workspace_store(options.store.path), port=port))
    workspace.start()
    return workspace


def _on_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C set `stop` (the monitor then ends every call with a summary within
    a few seconds); a second one exits at once, whatever is still running."""

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.warning("%s: stopping (again to exit at once)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _overload(config, live: bool):
    """The overload policy from the run settings: on for live sources unless switched off;
    `shed_after_s: 0` never sheds (its threshold then sits out of reach)."""
    from qa.overload import OverloadOptions

    default = OverloadOptions()
    refuse = config.refuse_after_s
    degrade = min(default.degrade_after_s, refuse)
    return OverloadOptions(
        enabled=live and config.overload,
        degrade_after_s=degrade, recover_after_s=min(default.recover_after_s, degrade),
        refuse_after_s=refuse,
        shed_after_s=config.shed_after_s or float("inf"))
