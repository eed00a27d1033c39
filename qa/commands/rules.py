"""`qa rules`: validate rule packs and try their phrases on text."""

from __future__ import annotations

import argparse
import sys

from qa.errors import ConfigError, QAError
from qa.rules import RuleDetector, load_pack
from qa.types import Segment, Speaker


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `qa rules check` and `qa rules match`."""
    parser = subparsers.add_parser("rules", help="validate rule packs and try their phrases")
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate rule pack files (docs/rules.md)")
    check.add_argument("files", nargs="+", metavar="FILE", help="rule pack YAML files")
    check.set_defaults(func=run)
    match = sub.add_parser("match", help="show which phrases of a pack a text matches")
    match.add_argument("pack", metavar="PACK", help="rule pack YAML file")
    match.add_argument("text", metavar="TEXT", help="text as the recogniser wrote it")
    match.add_argument(
        "--speaker", choices=[s.value for s in Speaker], default="agent", help="who said it"
    )
    match.add_argument("--scores", action="store_true",
                       help="also show every rule's intent score and nearest example")
    match.add_argument("--phrases-only", action="store_true", help="do not match by meaning")
    match.set_defaults(func=run)
    tune = sub.add_parser(
        "tune", help="calibrate each rule's intent threshold on labelled utterances",
        description="Chooses, per rule with examples, the lowest similarity threshold at which "
        "the rule reaches the target precision on the labelled utterances (JSON lines: text, "
        "speaker, labels), and prints precision and recall per rule before and after. With "
        "--db, reviewers' labels (`qa review label`, overrides) are folded into the rules' "
        "examples and counter-examples first. Nothing is written without --write.",
    )
    tune.add_argument("pack", metavar="PACK", help="rule pack YAML file")
    tune.add_argument("labels", nargs="*", metavar="LABELS", help="labelled utterances (.jsonl)")
    tune.add_argument("--precision", type=float, default=0.95,
                      help="precision each rule must reach (default 0.95)")
    tune.add_argument("--db", metavar="PATH|URL",
                      help="fold reviewers' labels from this call store (an SQLite file or a "
                      "postgresql:// URL) into the pack")
    tune.add_argument("--write", action="store_true", help="save the thresholds (and examples)")
    tune.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs `qa rules ACTION`; returns 2 when any file is invalid."""
    if args.rules_command == "match":
        return _match(args)
    if args.rules_command == "tune":
        return _tune(args)
    status = 0
    for path in args.files:
        try:
            pack = load_pack(path)
        except QAError as exc:
            print(f"qa: error: {exc}", file=sys.stderr)
            status = 2
            continue
        phrases = sum(len(f.phrases) for f in pack.forbidden)
        print(
            f"{path}: ok ({len(pack.steps)} steps, {phrases} forbidden phrases, "
            f"{len(pack.categories)} categories, language {pack.language}, "
            f"handle time {pack.handle_time.limit:g} s)"
        )
    return status


def _match(args: argparse.Namespace) -> int:
    pack = load_pack(args.pack)
    detector = RuleDetector(pack, intents=not args.phrases_only)
    speaker = Speaker(args.speaker)
    hits = detector.detect(Segment("cli", speaker, 0.0, 0.0, args.text))
    for hit in hits:
        print(
            f"{hit.rule_id}\t{hit.kind.value}\t{hit.score:.2f}\t{hit.phrase}\t{hit.evidence_text}"
        )
    if not hits:
        print("no match")
    if args.scores and detector.intents is not None:
        _, scores = detector.explain(args.text, speaker)
        print("\nintent scores (rule, score / threshold, nearest example, nearest counter-example,"
              " clause):")
        for s in scores:
            verdict = "match" if s.matched else "below threshold" if s.clear else "nearer counter"
            counter = f'{s.counter:.2f} "{s.counter_example}"' if s.counter_example else "-"
            print(f"  {s.rule_id}\t{s.score:.2f} / {s.threshold:.2f}\t{verdict}\t"
                  f'"{s.example}"\t{counter}\t"{s.span.text}"')
    return 0


def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.2f}"


def _tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qa.rules import loads_pack
    from qa.rules.calibrate import evaluate, load_labelled, tune
    from qa.rules.packedit import add_examples, set_thresholds

    if not 0.0 < args.precision <= 1.0:
        raise ConfigError("command line", "must be in (0, 1]", field="precision")
    path = Path(args.pack)
    pack = load_pack(path)
    source = path.read_text(encoding="utf-8")
    if args.db:
        additions = _reviewer_examples(args.db, pack)
        if additions:
            source = add_examples(source, additions, str(path))
            pack = loads_pack(source, str(path))
            for a in additions:
                print(f"{a.rule_id}: + {a.key[:-1].replace('_', '-')} \"{a.text}\" ({a.comment})")
        else:
            print("no new reviewer labels to fold in")
    data = [item for f in args.labels for item in load_labelled(f, pack)]
    if not data:
        if args.write and args.db:
            _save(path, source)
        print("no labelled utterances given: thresholds unchanged")
        return 0
    before = evaluate(RuleDetector(pack), data)
    phrases = evaluate(RuleDetector(pack, intents=False), data)
    calibrations = tune(RuleDetector(pack), data, args.precision)
    source = set_thresholds(source, {c.rule: c.threshold for c in calibrations}, str(path))
    tuned = loads_pack(source, str(path))
    after = evaluate(RuleDetector(tuned), data)
    print(f"{len(data)} labelled utterances; target precision {args.precision:g}")
    print("rule              positives  threshold      before P/R   after P/R   phrases P/R")
    chosen = {c.rule: c for c in calibrations}
    for rule, st in after.rules.items():
        b, ph = before.rules[rule], phrases.rules[rule]
        c = chosen.get(rule)
        thr = f"{c.old:.2f} -> {c.threshold:.2f}" if c else "   (phrases)"
        print(f"{rule:<17} {st.tp + st.fn:>9}  {thr:<13} {_pct(b.precision)} {_pct(b.recall)}"
              f"   {_pct(st.precision)} {_pct(st.recall)}   {_pct(ph.precision)} "
              f"{_pct(ph.recall)}")
    for name, ev in (("before", before), ("after", after), ("phrases only", phrases)):
        print(f"pooled {name}: precision {_pct(ev.pooled.precision)} recall "
              f"{_pct(ev.pooled.recall)} (intent hits {ev.pooled.intent_tp} right, "
              f"{ev.pooled.intent_fp} wrong)")
    if args.write:
        _save(path, source)
        print(f"wrote {path}")
    else:
        print("dry run: add --write to save the thresholds")
    return 0


def _reviewer_examples(db: str, pack):
    from qa.db import parse_location
    from qa.rules.normalize import normalize
    from qa.rules.packedit import Addition
    from qa.store import CallStore, StoreOptions

    rules = {r.id: r for r in pack.matchable()}
    with CallStore(StoreOptions(path=parse_location(db))) as store:
        labels = store.labels()
    out, seen = [], set()
    for label in labels:
        rule = rules.get(label.rule_id)
        if rule is None:
            continue
        key = "examples" if label.verdict == "yes" else "counter_examples"
        have = {normalize(t) for t in (*rule.examples, *rule.counter_examples)}
        norm = normalize(label.text)
        if not norm or norm in have or (rule.id, norm) in seen:
            continue
        if key == "counter_examples" and not rule.examples:
            continue  # counter-examples need examples to be compared with
        seen.add((rule.id, norm))
        out.append(Addition(rule.id, key, label.text,
                            f"review {label.call_id} #{label.segment} by {label.reviewer}: "
                            f"{label.reason}".replace("\n", " ")))
    return out


def _save(path, text: str) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
