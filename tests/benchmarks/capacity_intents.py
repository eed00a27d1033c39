"""Capacity with the rules on: the live load of `capacity.py` with a rule pack's intents.

Matching by meaning runs on the pipeline's dispatcher thread, never on a transcription
worker, but it takes CPU on the same cores. This runs `live_load`'s staggered real-time calls
through the batched pipeline (`capacity.py`'s chosen policy and parameters) with each rules
mode in turn, alternating, on the same calls:

- `off`: no rules (as `capacity.py` measures);
- `phrases`: the pack's rules, phrases only;
- `intents`: the pack's rules with its intents (encoder and classifiers loaded before the
  first call, as `qa run` does).

Every call is a copy of the same call, so with the encoder's cache its sentences would be
encoded once for all calls; `--new-sentences` empties the cache before each segment, so every
segment costs what a sentence never heard before costs (the worst case, as the intent
benchmark measures it).

Per run: end-of-speech-to-final-text latency p50/p95, CPU, WER, drops (as `capacity.py`),
and for the rules: segments matched, intent hits, the dispatcher's CPU per segment for the
rules (thread time, p50/p99, and the run's total) and the end of speech to the rules'
verdict (p50/p95: the transcription latency plus the wait in the dispatcher's queue plus the
matching).

    .venv/bin/python -m tests.benchmarks.capacity_intents --calls 8,16 --modes off,intents \
        --new-sentences
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa.pipeline import Pipeline, PipelineOptions
from qa.rules import CallRules, build_intents, build_matcher, load_pack
from qa.types import CallInfo, PipelineListener
from tests.benchmarks.capacity import BATCH_WAIT_MS, MAX_BATCH
from tests.benchmarks.live_load import LoadResult, build_call, run_load

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "examples" / "rules" / "en_support.yaml"
MODES = ("off", "phrases", "intents")


@dataclass
class RuleTimes:
    """What the rules did during one run (filled by the dispatcher thread)."""

    cpu: list[float] = field(default_factory=list)  # thread CPU per segment, seconds
    verdict: list[float] = field(default_factory=list)  # end of speech to verdict, seconds
    intent_hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _TimedRules:
    """A call's `CallRules`, timing each segment's matching on the dispatcher thread.

    The call's audio runs in real time from when the pipeline asks for its rules (the call's
    start), so a segment's speech ended `segment.end` seconds after that."""

    def __init__(self, rules: CallRules, times: RuleTimes, new_sentences: bool = False) -> None:
        self._rules = rules
        self._times = times
        self._forget = new_sentences and rules.intents is not None
        self._start = time.monotonic()

    def on_segment(self, segment):
        if self._forget:  # every sentence new (on the dispatcher thread, outside the timing)
            self._rules.intents.encoder.clear_cache()
            self._rules.intents.__dict__.get("_scored", {}).clear()
        cpu = time.thread_time()
        events = self._rules.on_segment(segment)
        spent = time.thread_time() - cpu
        verdict = time.monotonic() - (self._start + segment.end)
        hits = sum(1 for e in events if e.match == "intent")
        with self._times.lock:
            self._times.cpu.append(spent)
            self._times.verdict.append(verdict)
            self._times.intent_hits += hits
        return events

    def __getattr__(self, name: str):
        return getattr(self._rules, name)


def rules_factory(mode: str, times: RuleTimes, pack_path: Path = PACK,
                  new_sentences: bool = False) -> Callable[[CallInfo], _TimedRules] | None:
    """The pipeline's per-call rules for a mode (None for `off`), everything loaded now;
    `new_sentences`: the encoder's cache emptied before each segment."""
    if mode == "off":
        return None
    if mode not in MODES:
        raise ValueError(f"unknown rules mode {mode!r} (one of {', '.join(MODES)})")
    pack = load_pack(pack_path)
    matcher = build_matcher(pack)
    intents = build_intents(pack) if mode == "intents" else None
    if mode == "intents" and intents is None:
        raise ValueError(f"{pack_path} has no intents (no rule has examples)")

    def rules(call: CallInfo) -> _TimedRules:
        return _TimedRules(CallRules(pack, call.call_id, call.agent_id, matcher=matcher,
                                     intents=intents or False), times, new_sentences)

    return rules


def batched_with_rules(transcriber, rules) -> Callable[[list[PipelineListener]], Pipeline]:
    """`capacity.py`'s batched policy, with the given rules factory."""
    from qa.batching import BatchTranscriber

    batcher = BatchTranscriber(transcriber)

    def build(listeners):
        options = PipelineOptions(language="en", max_batch=MAX_BATCH,
                                  batch_wait_ms=BATCH_WAIT_MS)
        return Pipeline(batcher.transcribe, options, listeners, rules=rules,
                        transcribe_batch=batcher.transcribe_batch)

    return build


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(transcriber, call_wav: Path, reference: dict[str, str], calls: int, mode: str,
        pack_path: Path = PACK, new_sentences: bool = False) -> tuple[LoadResult, dict]:
    """One live-load run with a rules mode; the load result and the rules' figures."""
    times = RuleTimes()
    rules = rules_factory(mode, times, pack_path, new_sentences)
    result = run_load(transcriber, call_wav, reference, calls,
                      batched_with_rules(transcriber, rules))
    figures = {
        "segments_matched": len(times.cpu),
        "intent_hits": times.intent_hits,
        "rules_cpu_p50_ms": round(_pct(times.cpu, 50) * 1e3, 2),
        "rules_cpu_p99_ms": round(_pct(times.cpu, 99) * 1e3, 2),
        "rules_cpu_total_s": round(sum(times.cpu), 3),
        "verdict_p50_s": round(_pct(times.verdict, 50), 2),
        "verdict_p95_s": round(_pct(times.verdict, 95), 2),
    }
    return result, figures


def main() -> None:
    from qa.asr import Transcriber, TranscriberOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="8,16")
    parser.add_argument("--modes", default="off,intents",
                        help=f"rules modes, alternated per N ({', '.join(MODES)})")
    parser.add_argument("--pack", type=Path, default=PACK)
    parser.add_argument("--shared-audio", type=Path, default=REPO.parent / "shared" / "audio")
    parser.add_argument("--new-sentences", action="store_true",
                        help="empty the encoder's cache before each segment (every sentence new)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    transcriber = Transcriber(TranscriberOptions(language="en"))
    modes = args.modes.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        call_wav, reference = build_call(args.shared_audio, Path(tmp) / "call.wav")
        print("rules    calls  utts  p50 s  p95 s  cpu %   WER  dropped  matched  intent hits"
              "  rules cpu p50/p99 ms  verdict p50/p95 s  load", flush=True)
        for n in (int(x) for x in args.calls.split(",")):
            for mode in modes:
                r, f = run(transcriber, call_wav, reference, n, mode, args.pack,
                           args.new_sentences)
                load = Path("/proc/loadavg").read_text().split()[0]
                rows.append({"mode": mode, "load_average": float(load), **asdict(r), **f})
                print(f"{mode:8s} {r.calls:5d}  {r.utterances:4d}  {r.latency_p50:5.2f}"
                      f"  {r.latency_p95:5.2f}  {r.cpu_percent:5.1f}  {r.wer:5.3f}"
                      f"  {r.dropped:7d}  {f['segments_matched']:7d}  {f['intent_hits']:11d}"
                      f"  {f['rules_cpu_p50_ms']:9.2f} / {f['rules_cpu_p99_ms']:6.2f}"
                      f"  {f['verdict_p50_s']:8.2f} / {f['verdict_p95_s']:5.2f}  {load}",
                      flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
