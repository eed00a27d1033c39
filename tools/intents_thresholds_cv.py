#!/usr/bin/env python3
"""Per-rule thresholds (`qa rules tune`) against the single default, by 2-fold
cross-validation on the TUNE half only (issue 9; docs/intents.md, "This round").

The tune half is split in two (seed 0); thresholds are tuned on one half for a target
precision, exactly as `qa rules tune` writes them, and both packs (tuned, default) are scored
on the other half; both ways, pooled. Never reads the test half. A measuring tool, not part of
the `qa` package: it prints its lines to stdout::

    PYTHONPATH=$PWD nice -n 5 .venv/bin/python tools/intents_thresholds_cv.py en zh
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from qa.rules import RuleDetector, load_pack, loads_pack
from qa.rules.calibrate import evaluate, load_labelled, tune
from qa.rules.packedit import set_thresholds

REPO = Path(__file__).resolve().parents[1]


def main(languages: list[str]) -> None:
    for lang in languages:
        path = REPO / "examples" / "rules" / f"{lang}_support.yaml"
        source = path.read_text(encoding="utf-8")
        pack = load_pack(path)
        data = load_labelled(REPO / "tests" / "data" / "intents" / lang / "tune.jsonl", pack)
        order = list(range(len(data)))
        random.Random(0).shuffle(order)
        folds = [[data[i] for i in order[0::2]], [data[i] for i in order[1::2]]]
        default = RuleDetector(pack)
        for target in (0.95, 0.90, 0.85):
            totals = {"default": [0, 0, 0], "tuned": [0, 0, 0]}
            for a, b in ((0, 1), (1, 0)):
                chosen = {c.rule: c.threshold for c in tune(default, folds[a], target)}
                tuned = RuleDetector(loads_pack(set_thresholds(source, chosen), str(path)))
                for name, detector in (("default", default), ("tuned", tuned)):
                    pooled = evaluate(detector, folds[b]).pooled
                    t = totals[name]
                    t[0], t[1], t[2] = t[0] + pooled.tp, t[1] + pooled.fp, t[2] + pooled.fn
            for name, (tp, fp, fn) in totals.items():
                print(f"{lang} target {target:.2f} {name:<8} P {tp / max(1, tp + fp):.3f} "
                      f"R {tp / max(1, tp + fn):.3f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["en", "zh"])
