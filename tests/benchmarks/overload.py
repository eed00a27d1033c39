"""Overload (issue 11, item 2): calls arrive faster than the transcription workers can decode
them, then the load falls. Measures what the overload policy (`qa.overload`) does: the lag of
what is transcribed, the queue age, the level, and what was degraded, refused and shed.

The 10-minute run: the turn-taking call of `tests/benchmarks/live_load.py` (29 s, real time)
started every 0.65 s for 10 minutes (twice the 40-calls-1.3-s-apart load that two workers
serve within the 3 s goal, docs/capacity.md), then every 2.6 s for 2 minutes (half of it).
Prints the p95 lag per minute and the recovery, and writes `bench-results/overload.json`.

    .venv/bin/python -m tests.benchmarks.overload [--minutes 10] [--interval 0.65]

`tests/overload/test_overload.py` runs a shortened version in the normal suite.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa.asr import Transcriber, TranscriberOptions
from qa.batching import CHEAP, BatchTranscriber
from qa.overload import OverloadOptions
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from qa.types import CallSummary, PipelineListener, Segment
from tests.benchmarks.live_load import build_call

REPO = Path(__file__).resolve().parents[2]
#: The policy as `qa run` turns it on for live calls.
LIVE = OverloadOptions(enabled=True)


@dataclass(frozen=True)
class Phase:
    """Calls started every `interval` seconds for `seconds`, replayed in real time or as
    fast as possible (a burst of all of a call's utterances at once); `after_recovery`: the
    phase starts only once the pipeline is back to normal with nothing waiting."""

    seconds: float
    interval: float
    realtime: bool = True
    after_recovery: bool = False


@dataclass
class OverloadRun:
    """What one run saw. Times are seconds since the run started (wall clock)."""

    phase_ends: list[float] = field(default_factory=list)
    #: (time, queue age s, queue depth, level), sampled every `sample_every`.
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)
    #: (time delivered, lag s) per transcribed utterance.
    lags: list[tuple[float, float]] = field(default_factory=list)
    summaries: list[CallSummary] = field(default_factory=list)
    #: (started, ended) wall time of every decode, for the decode-time bound.
    decodes: list[tuple[float, float]] = field(default_factory=list)
    degraded: int = 0
    refused: int = 0
    shed: int = 0
    dropped: int = 0
    episodes: int = 0
    #: Seconds waited for recovery before each `after_recovery` phase.
    recovery_waits: list[float] = field(default_factory=list)

    def p95(self, start: float, end: float) -> float:
        lags = [lag for t, lag in self.lags if start <= t < end]
        return float(np.percentile(lags, 95)) if lags else float("nan")

    def recovery(self) -> float:
        """Seconds from the end of the overload phase until the level is normal and nothing
        has waited over 1 s, for good (nan: never)."""
        end = self.phase_ends[0]
        last_bad = end
        for t, age, _, level in self.samples:
            if t >= end and (level > 0 or age > 1.0):
                last_bad = t
        after = [t for t, *_ in self.samples if t > last_bad]
        return after[0] - end if after else float("nan")

    def longest_decode(self) -> float:
        return max((b - a for a, b in self.decodes), default=0.0)


class _Listen(PipelineListener):
    def __init__(self, run: OverloadRun, began: float) -> None:
        self.run, self.began = run, began
        self.lock = threading.Lock()
        self.seen: set[tuple[str, object, float]] = set()

    def segment(self, segment: Segment, latency: float) -> None:
        key = (segment.call_id, segment.speaker, segment.start)
        with self.lock:  # the batched path gives one segment per utterance
            if key not in self.seen:
                self.seen.add(key)
                self.run.lags.append((time.monotonic() - self.began, latency))

    def call_ended(self, summary: CallSummary) -> None:
        with self.lock:
            self.run.summaries.append(summary)


def run_overload(
    transcriber: Transcriber,
    call_wav: Path,
    phases: list[Phase],
    overload: OverloadOptions = LIVE,
    workers: int = 2,
    sample_every: float = 0.5,
) -> OverloadRun:
    """Plays the phases through one pipeline built as `qa run` builds it (batched path,
    the cheap step for overload, `workers` workers) and records what happened."""
    run = OverloadRun()
    began = time.monotonic()
    listen = _Listen(run, began)
    batcher = BatchTranscriber(transcriber)
    cheap = BatchTranscriber(transcriber, CHEAP)

    def timed(step):
        def decode(utterances, language):
            a = time.monotonic() - began
            try:
                return step(utterances, language)
            finally:
                with listen.lock:
                    run.decodes.append((a, time.monotonic() - began))
        return decode

    batch = timed(batcher.transcribe_batch)
    pipeline = Pipeline(
        lambda utterance, language: batch([utterance], language)[0],
        PipelineOptions(language="en", workers=workers, overload=overload),
        [listen], transcribe_batch=batch, transcribe_cheap=timed(cheap.transcribe_batch),
    )
    stop = threading.Event()
    done_sampling = threading.Event()

    def sample() -> None:
        while not done_sampling.wait(sample_every):
            run.samples.append((time.monotonic() - began, pipeline.queue_age,
                                pipeline.queue_depth, pipeline.overload.level))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    players: list[threading.Thread] = []
    index = 0
    for phase in phases:
        if phase.after_recovery:
            waited = time.monotonic()
            while pipeline.overload.level > 0 or pipeline.queue_depth > 0:
                time.sleep(0.1)
            run.recovery_waits.append(time.monotonic() - waited)
        phase_start = time.monotonic()
        next_start = phase_start
        while next_start < phase_start + phase.seconds:
            time.sleep(max(0.0, next_start - time.monotonic()))
            source = FileSource(FileOptions(call_wav, realtime=phase.realtime,
                                            call_id=f"load-{index}"))
            player = threading.Thread(target=source.run, args=(pipeline, stop), daemon=True)
            player.start()
            players.append(player)
            index += 1
            next_start += phase.interval
        run.phase_ends.append(time.monotonic() - began)
    for player in players:
        player.join()
    pipeline.wait_idle()
    time.sleep(2 * sample_every)  # a last sample of the idle pipeline
    done_sampling.set()
    sampler.join()
    pipeline.close()
    state = pipeline.overload
    run.degraded, run.refused, run.shed = (state.degraded_utterances, state.refused_calls,
                                           state.shed_utterances)
    run.episodes = state.episodes
    run.dropped = pipeline.dropped_utterances
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.65,
                        help="seconds between call starts while overloaded")
    parser.add_argument("--after", type=float, default=2.0, help="minutes of half load after")
    parser.add_argument("--shared-audio", type=Path, default=REPO.parent / "shared" / "audio")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "overload.json")
    args = parser.parse_args()
    import tempfile

    transcriber = Transcriber(TranscriberOptions(language="en"))
    with tempfile.TemporaryDirectory() as tmp:
        call, _ = build_call(args.shared_audio, Path(tmp) / "call.wav")
        run = run_overload(transcriber, call, [
            Phase(args.minutes * 60, args.interval),
            Phase(args.after * 60, args.interval * 4),
        ])
    end = run.phase_ends[0]
    for minute in range(int(np.ceil(run.phase_ends[-1] / 60))):
        a, b = minute * 60.0, (minute + 1) * 60.0
        ages = [age for t, age, *_ in run.samples if a <= t < b]
        levels = [level for t, _, _, level in run.samples if a <= t < b]
        print(f"minute {minute:2d}{' (after)' if a >= end else ''}: p95 lag {run.p95(a, b):5.2f} s"
              f", max queue age {max(ages, default=0):5.2f} s, max level "
              f"{max(levels, default=0)}", flush=True)
    admitted = [s for s in run.summaries if not s.reason.startswith("refused")]
    print(f"calls {len(run.summaries)} (refused {run.refused}), utterances "
          f"{sum(s.utterances for s in admitted)}, transcribed {len(run.lags)}, degraded "
          f"{run.degraded}, shed {run.shed}, dropped {run.dropped}")
    print(f"p95 lag while overloaded {run.p95(0, end):.2f} s, after {run.p95(end, 1e9):.2f} s;"
          f" recovery {run.recovery():.1f} s after the load fell")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = asdict(run) | {"summaries": [asdict(s) | {"speech": None, "scorecard": None}
                                       for s in run.summaries]}
    args.json.write_text(json.dumps(doc, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
