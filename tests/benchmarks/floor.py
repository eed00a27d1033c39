"""The compute floor of 16 calls started together (issue 11, item 1): how long the model alone
takes to transcribe the 16 utterances that end at the same instant, with no scheduling at all.

With 16 copies of the turn-taking call of `tests/benchmarks/live_load.py` started together,
every call's utterance ends at the same moment, three times (the agent's 7.1 s, the
customer's 11 s, the agent's 8.7 s). No scheduler can answer a wave sooner than the model
can decode it, so the slowest wave's decode time is the floor of the p95 latency. Each split
decodes each wave, directly on `BatchTranscriber`, best of `--repeat`:

- 2 x 1: two batches of 8 at once, one thread each (the default split);
- 1 x 2: one batch of 16 on two threads;
- 2 x 1 cheap: as 2 x 1 with the overload policy's decode (beam 1, no retry);
- encoder only: the 2 x 1 split's encoder share (two batches of 8 encoded at once).

    .venv/bin/python -m tests.benchmarks.floor [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from qa.asr import Transcriber, TranscriberOptions
from qa.batching import CHEAP, BatchTranscriber, window_frames
from qa.offline import cut_file
from qa.sources.wav import read_wav
from tests.benchmarks.live_load import build_call

REPO = Path(__file__).resolve().parents[2]
CALLS = 16


def _at_once(jobs) -> tuple[float, float]:
    """Runs the jobs in threads at once; returns the wall time until the last one ends and
    the process's CPU time meanwhile. On a shared machine the wall time depends on the other
    jobs; the CPU time over the cores the split keeps busy is the floor on a machine of
    one's own."""
    threads = [threading.Thread(target=job) for job in jobs]
    began, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--shared-audio", type=Path, default=REPO.parent / "shared" / "audio")
    parser.add_argument("--json", type=Path, default=REPO / "bench-results" / "floor.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        call, _ = build_call(args.shared_audio, Path(tmp) / "call.wav")
        waves = [[replace(u, call_id=f"c{i}") for i in range(CALLS)]
                 for u in sorted(cut_file(read_wav(call), "call"), key=lambda u: u.end)]
    one = Transcriber(TranscriberOptions(language="en", cpu_threads=1, num_workers=2))
    two = Transcriber(TranscriberOptions(language="en", cpu_threads=2, num_workers=1))
    split, cheap = BatchTranscriber(one), BatchTranscriber(one, CHEAP)
    joint = BatchTranscriber(two)
    parts = split._parts

    def encode_only(wave):
        def job(rows):
            def run():
                feats = [parts.features(np.concatenate(
                    [split._pad, u.pcm16.astype(np.float32) / 32768.0, split._pad]))
                    for u in rows]
                frames = window_frames(feats[0].shape[-1], split.options)
                batch = np.zeros((len(feats), feats[0].shape[0], frames), np.float32)
                for row, f in zip(batch, feats, strict=True):
                    row[:, : f.shape[-1]] = f
                parts.encode(batch)
            return run
        return _at_once([job(wave[:8]), job(wave[8:])])

    splits = {
        "2 x 1": lambda w: _at_once([lambda: split.transcribe_batch(w[:8], "en"),
                                     lambda: split.transcribe_batch(w[8:], "en")]),
        "1 x 2": lambda w: _at_once([lambda: joint.transcribe_batch(w, "en")]),
        "2 x 1 cheap": lambda w: _at_once([lambda: cheap.transcribe_batch(w[:8], "en"),
                                           lambda: cheap.transcribe_batch(w[8:], "en")]),
        "encoder only, 2 x 1": encode_only,
    }
    rows = []
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    for name, decode in splits.items():
        runs = [min(decode(wave) for _ in range(args.repeat)) for wave in waves]
        # Both splits keep both cores busy (2 x 1: one thread each; 1 x 2: two threads).
        floors = [cpu / 2 for _, cpu in runs]
        rows.append({"split": name, "wall": [round(w, 3) for w, _ in runs],
                     "cpu": [round(c, 3) for _, c in runs]})
        print(f"{name:20s} wall {' '.join(f'{w:5.2f}' for w, _ in runs)} s, cpu "
              f"{' '.join(f'{c:5.2f}' for _, c in runs)} s: floor on 2 idle cores "
              f"{max(floors):5.2f} s", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
