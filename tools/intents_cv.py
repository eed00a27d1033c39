#!/usr/bin/env python3
"""Cross-validate intent matching on the TUNE half and the behaviour library (issue 9).

Never reads the test half. Three figures per language, pooled over the example pack's 12
rules through the same `RuleDetector` that runs on calls (docs/intents.md, "Results"):

* ``tune``: the tune half scored with the pack as it ships (library and pack examples only);
* ``tune-cv``: k-fold over the tune half, the library plus k-1 folds of it as training data
  (single-label lines as examples of their rule, unlabelled lines as neutral talk), scored on
  the fold left out: whether more data of this kind would help;
* ``library-cv``: k-fold over the library's own lines (the pack's examples always in), each
  fold's lines scored as labelled utterances: how well the classifier generalises to
  phrasings it has not seen, independent of the tune half.

Options can be overridden to compare settings, e.g.::

    PYTHONPATH=$PWD nice -n 5 .venv/bin/python tools/intents_cv.py --lang en zh \\
        --set threshold=0.1 --set ngrams=0.5

This is a measuring tool, not part of the ``qa`` package: it prints its table to stdout.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path

from qa.rules import RuleDetector, load_pack
from qa.rules.behaviours import LIBRARY_DIR, library
from qa.rules.calibrate import Labelled, evaluate, load_labelled
from qa.rules.encoder import shared_encoder
from qa.rules.intents import IntentMatcher, IntentRule, Library
from qa.rules.schema import Forbidden
from qa.types import Speaker

REPO = Path(__file__).resolve().parents[1]


class _Encoder:
    """The shared encoder without its disk caches (every fold is another set of texts; its
    in-memory cache still serves the texts the folds share)."""

    def encode(self, texts):
        return shared_encoder().encode(texts)


def _detector(pack, options, behaviours: dict[str, list[str]], neutral: list[str]):
    rules = [IntentRule(r.id, (*r.examples, *r.phrases), r.counter_examples, r.threshold,
                        r.behaviour, isinstance(r, Forbidden))
             for r in pack.matchable() if r.examples or r.behaviour]
    lib = Library({k: tuple(v) for k, v in behaviours.items()}, tuple(neutral))
    return RuleDetector(pack, intents=IntentMatcher(rules, _Encoder(), options, lib))


def _split(rows: list[Labelled]) -> tuple[dict[str, list[str]], list[str]]:
    behaviours: dict[str, list[str]] = {}
    neutral: list[str] = []
    for row in rows:
        if not row.labels:
            neutral.append(row.text)
        elif len(row.labels) == 1:
            behaviours.setdefault(next(iter(row.labels)), []).append(row.text)
    return behaviours, neutral


def _library_rows(lang: str) -> list[Labelled]:
    out = []
    for line in (LIBRARY_DIR / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            labels = frozenset() if row["behaviour"] == "neutral" else {row["behaviour"]}
            out.append(Labelled(row["text"], Speaker(row["speaker"]), frozenset(labels)))
    return out


def _folds(n: int, k: int, seed: int) -> list[set[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [set(order[f::k]) for f in range(k)]


def _cv(pack, options, rows, base: tuple[dict, list], k: int, seed: int,
        train_on_rest: bool) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for held in _folds(len(rows), k, seed):
        rest = [r for i, r in enumerate(rows) if i not in held]
        behaviours = {name: list(texts) for name, texts in base[0].items()}
        neutral = list(base[1])
        if train_on_rest:
            more, calm = _split(rest)
            for name, texts in more.items():
                behaviours.setdefault(name, []).extend(texts)
            neutral += calm
        else:  # the rest IS the training library
            behaviours, neutral = _split(rest)
        pooled = evaluate(_detector(pack, options, behaviours, neutral),
                          [r for i, r in enumerate(rows) if i in held]).pooled
        tp, fp, fn = tp + pooled.tp, fp + pooled.fp, fn + pooled.fn
    return tp, fp, fn


def _pr(tp: int, fp: int, fn: int) -> str:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return f"{p:.3f} / {r:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lang", nargs="+", default=["en", "zh"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="override an IntentOptions field (numbers only)")
    args = parser.parse_args()
    overrides = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    print("language  tune P / R      tune-cv P / R   library-cv P / R")
    for lang in args.lang:
        pack = load_pack(REPO / "examples" / "rules" / f"{lang}_support.yaml")
        options = replace(pack.intents, **overrides)
        lib = library(lang)
        base = ({k: list(v) for k, v in lib.behaviours.items()}, list(lib.neutral))
        tune = load_labelled(REPO / "tests" / "data" / "intents" / lang / "tune.jsonl", pack)
        plain = evaluate(_detector(pack, options, *base), tune).pooled
        tune_cv = _cv(pack, options, tune, base, args.folds, args.seed, train_on_rest=True)
        lib_cv = _cv(pack, options, _library_rows(lang), base, args.folds, args.seed,
                     train_on_rest=False)
        print(f"{lang:<9} {_pr(plain.tp, plain.fp, plain.fn):<15} {_pr(*tune_cv):<15} "
              f"{_pr(*lib_cv)}", flush=True)


if __name__ == "__main__":
    main()
