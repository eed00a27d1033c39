"""All cores of one box (issue 11): which split of the machine transcribes live calls fastest.

Candidates on the same model (`base`, int8), calls and front end, measured in one run:
pipeline transcription workers x CTranslate2 threads per decode x decodes that may run at
once (`num_workers`), and the most utterances per batch. Each is run on N calls started
together (the worst case: every call's utterances end at the same moments) and on M calls
started 1.3 s apart (`tests/benchmarks/live_load.py`). Prints one row per candidate and load
and writes `bench-results/cores.json`.

    .venv/bin/python -m tests.benchmarks.cores [--together 16] [--staggered 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from qa.asr import Transcriber, TranscriberOptions
from qa.batching import BatchTranscriber
from qa.pipeline import Pipeline, PipelineOptions
from tests.benchmarks.live_load import build_call, run_load

REPO = Path(__file__).resolve().parents[2]
#: (pipeline workers, CTranslate2 threads per decode, decodes at once, utterances per batch)
CANDIDATES = (
    (1, 2, 1, 8),   # the default: one worker using both cores per decode
    (1, 2, 1, 16),
    (2, 1, 2, 8),   # two workers, one core each, decoding at once
    (2, 2, 2, 8),   # two workers, both cores each (oversubscribed)
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--together", type=int, default=16)
    parser.add_argument("--staggered", type=int, default=40)
    parser.add_argument("--candidates", default="",
                        help="indices into CANDIDATES, comma-separated (default: all)")
    parser.add_argument("--shared-audio", type=Path, default=REPO.parent / "shared" / "audio")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "cores.json")
    args = parser.parse_args()
    chosen = [CANDIDATES[int(i)] for i in args.candidates.split(",")] if args.candidates \
        else list(CANDIDATES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        call, reference = build_call(args.shared_audio, Path(tmp) / "call.wav")
        for workers, threads, at_once, batch in chosen:
            transcriber = Transcriber(TranscriberOptions(cpu_threads=threads,
                                                         num_workers=at_once))
            batcher = BatchTranscriber(transcriber)

            def make(listeners, workers=workers, batch=batch, batcher=batcher):
                options = PipelineOptions(language="en", workers=workers, max_batch=batch)
                return Pipeline(batcher.transcribe, options, listeners,
                                transcribe_batch=batcher.transcribe_batch)

            for load, calls, stagger in (("together", args.together, 0.0),
                                         ("staggered", args.staggered, 1.3)):
                result = run_load(transcriber, call, reference, calls, make, stagger=stagger)
                row = {"workers": workers, "threads": threads, "at_once": at_once,
                       "batch": batch, "load": load, **asdict(result)}
                rows.append(row)
                print(f"workers {workers} threads {threads} at-once {at_once} batch {batch:2d}"
                      f" | {load:9s} {calls:3d} calls: p50 {result.latency_p50:5.2f} s"
                      f" p95 {result.latency_p95:5.2f} s cpu {result.cpu_percent:5.1f}%"
                      f" wer {result.wer:.3f} dropped {result.dropped}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
