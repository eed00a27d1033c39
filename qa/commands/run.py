"""`qa run`: monitor live calls from sound cards, RTP streams or replayed files."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import replace

from qa.config import RunConfig, load_config
from qa.errors import ConfigError
from qa.pipeline import CallSummary, Pipeline, PipelineListener, PipelineOptions
from qa.sources.base import CallInfo
from qa.types import Segment, Speaker


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="monitor live calls",
        description="Capture calls from sound cards, RTP streams or WAV files, transcribe them "
        "as they happen and print each final segment. Runs until Ctrl-C or until every source "
        "ends, then prints a summary per call.",
    )
    parser.add_argument(
        "--source", action="append", default=None, metavar="SOURCE",
        help="soundcard[:DEVICE], rtp://HOST:PORT[,PORT2] or file:PATH[?realtime=1] "
        "(repeatable)",
    )
    parser.add_argument("--config", help="YAML file with the run settings (see qa/config.py)")
    parser.add_argument("--agent", help="agent id recorded on the calls")
    parser.add_argument("--language", choices=("en", "zh", "auto"), help="default: auto")
    parser.add_argument("--model", help="model name or directory (default: base)")
    parser.add_argument("--workers", type=int, help="transcription worker threads (default 1)")
    parser.add_argument("--json", action="store_true", default=None, help="print JSON lines")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> RunConfig:
    config = load_config(args.config) if args.config else RunConfig()
    overrides = {
        "sources": tuple(args.source) if args.source else None,
        "agent": args.agent,
        "language": args.language,
        "model": args.model,
        "workers": args.workers,
        "json": args.json,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if not config.sources:
        raise ConfigError(args.config or "command line", "no source given", field="source")
    return config


class _Printer(PipelineListener):
    """Prints segments as they arrive and a summary per call (the CLI's only output)."""

    def __init__(self, as_json: bool, many_calls: bool) -> None:
        self._json = as_json
        self._many = many_calls
        self._lock = threading.Lock()
        self.summaries: list[CallSummary] = []

    def _print(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)

    def ready(self, sources: list[str]) -> None:
        """Says that the model is loaded and every source is open (sockets bound)."""
        if self._json:
            self._print(json.dumps({"type": "ready", "sources": sources}))
        else:
            self._print(f"# ready: {', '.join(sources)}")

    def call_started(self, call: CallInfo) -> None:
        if not self._json:
            self._print(f"# call {call.call_id} started ({call.source})")

    def segment(self, segment: Segment, latency: float) -> None:
        if self._json:
            self._print(json.dumps({
                "type": "segment", "call": segment.call_id, "start": round(segment.start, 2),
                "end": round(segment.end, 2), "speaker": str(segment.speaker),
                "text": segment.text, "language": segment.language,
                "latency": round(latency, 3),
            }, ensure_ascii=False))
            return
        prefix = f"{segment.call_id} " if self._many else ""
        self._print(
            f"{prefix}[{_clock(segment.start)}-{_clock(segment.end)}] "
            f"{segment.speaker}: {segment.text}"
        )

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float) -> None:
        if self._json:
            self._print(json.dumps({"type": "dtmf", "call": call_id, "channel": str(channel),
                                    "digit": digit, "time": round(time, 2)}))
        else:
            self._print(f"# call {call_id}: key {digit} on {channel} at {_clock(time)}")

    def call_ended(self, summary: CallSummary) -> None:
        with self._lock:
            self.summaries.append(summary)
        speech = {str(s): round(v, 2) for s, v in summary.speech}
        if self._json:
            self._print(json.dumps({
                "type": "summary", "call": summary.call_id, "agent": summary.agent_id,
                "reason": summary.reason, "duration": round(summary.duration, 2),
                "speech": speech, "utterances": summary.utterances,
                "segments": summary.segments, "dropped_utterances": summary.dropped_utterances,
                "dropped_audio": round(summary.gap_seconds, 3),
                "latency_p50": round(summary.latency_p50, 3),
                "latency_p95": round(summary.latency_p95, 3),
            }))
            return
        per_speaker = ", ".join(f"{s} {v:.1f} s" for s, v in speech.items())
        self._print(
            f"# call {summary.call_id} ended ({summary.reason}): {summary.duration:.1f} s, "
            f"speech {per_speaker}, {summary.utterances} utterances, "
            f"{summary.dropped_utterances} dropped, {summary.gap_seconds:.2f} s audio missing, "
            f"latency p50 {summary.latency_p50:.2f} s p95 {summary.latency_p95:.2f} s"
        )


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:05.2f}"


def run(args: argparse.Namespace) -> int:
    from qa.asr import Transcriber, TranscriberOptions
    from qa.sources.spec import open_source

    settings = _settings(args)
    sources = [open_source(spec, agent_id=settings.agent) for spec in settings.sources]
    language = None if settings.language == "auto" else settings.language
    transcriber = Transcriber(TranscriberOptions(model=settings.model, language=language))
    printer = _Printer(settings.json, many_calls=len(sources) > 1)
    pipeline = Pipeline(
        transcriber.transcribe,
        PipelineOptions(workers=settings.workers, queue_size=settings.queue_size,
                        language=language),
        listeners=[printer],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    printer.ready([source.name for source in sources])
    threads = [
        threading.Thread(target=_run_source, args=(source, pipeline, stop), name=source.name,
                         daemon=True)
        for source in sources
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join()
    pipeline.wait_idle()
    pipeline.close()
    return 0


def _run_source(source, pipeline: Pipeline, stop: threading.Event) -> None:
    try:
        source.run(pipeline, stop)
    except Exception as exc:  # one failing source must not stop the others
        print(f"qa: source {source.name} failed: {exc}", file=sys.stderr, flush=True)
