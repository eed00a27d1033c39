"""Benchmark: matching one segment by meaning against a pack with over 1,000 examples.

The English example pack with the built-in behaviour library holds about 1,400 texts (the
rules' examples, phrases and counter-examples, the library's behaviours and its neutral talk).
Each segment is a held-out utterance never seen before, so the encoder's cache never helps:
this is the cost of a new sentence. The phrase matcher on the same segments is the baseline
measured in the same run; the ratio, the p99 per segment and the encoder's memory go into
`benchmark.extra_info`. The encoder runs on one BLAS thread. No absolute time is asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from qa.rules import RuleDetector, load_pack
from qa.types import Segment, Speaker

REPO = Path(__file__).resolve().parents[2]


def _segments() -> list[Segment]:
    lines = (REPO / "tests" / "data" / "intents" / "en" / "test.jsonl").read_text(
        encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines if x.strip()]
    return [Segment("bench", Speaker(r["speaker"]), 0.0, 3.0, r["text"]) for r in rows]


def _encoder_bytes(detector: RuleDetector) -> int:
    backend = detector.intents.encoder._backend
    total = 0
    for value in vars(backend).values():
        arrays = value if isinstance(value, list) else [value]
        total += sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    return total


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def test_intent_matching_per_segment(benchmark):
    pack = load_pack(REPO / "examples" / "rules" / "en_support.yaml")
    detector = RuleDetector(pack)
    phrases = RuleDetector(pack, intents=False)
    assert detector.intents is not None and len(detector.intents) >= 1000
    segments = _segments()
    # Warm up the classifiers and BLAS once (not the cache: each text is timed on first use).
    detector.detect(Segment("bench", Speaker.AGENT, 0.0, 1.0, "Warm-up sentence number one."))

    ours, baseline, found = [], [], 0
    for segment in segments:
        t0 = time.perf_counter()
        hits = detector.detect(segment)
        ours.append(time.perf_counter() - t0)
        found += any(h.kind == "intent" for h in hits)
        t0 = time.perf_counter()
        phrases.detect(segment)
        baseline.append(time.perf_counter() - t0)
    assert found >= len(segments) // 3  # meaning finds acts in a good share of them

    repeated = segments[0]
    benchmark(detector.detect, repeated)  # the cached path, for the record
    benchmark.extra_info.update(
        texts_in_pack=len(detector.intents),
        segments=len(segments),
        intents_median_ms=round(_p(ours, 0.5) * 1e3, 3),
        intents_p99_ms=round(_p(ours, 0.99) * 1e3, 3),
        phrases_median_ms=round(_p(baseline, 0.5) * 1e3, 3),
        phrases_p99_ms=round(_p(baseline, 0.99) * 1e3, 3),
        ratio_p99=round(_p(ours, 0.99) / _p(baseline, 0.99), 1),
        encoder_mib=round(_encoder_bytes(detector) / 2**20, 1),
    )
    print(benchmark.extra_info)
