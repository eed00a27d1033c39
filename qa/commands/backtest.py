"""`qa backtest`: run a rule pack over a folder of recorded calls and count what each rule hit.

Every `*.wav` in the folder (sorted by name) is replayed through one `Monitor` (the model is
loaded once, nothing is stored), exactly as `qa score` would replay it. Per rule, call level:

* **hits**: calls on which the rule took points off (an event with negative points: a missed
  step, a forbidden phrase, the handle-time breach, dead air, ...);
* **done**: calls on which the step was performed (a `step_done` event, late or out of order
  included); always 0 for rules that are not steps.
* **intent**: calls on which the rule's hit or done came from matching by meaning only (no
  phrase of the rule matched there), so a changed pack's intents can be judged apart.

With a labels file (YAML mapping each file name to the rule ids expected to hit it, `[]` for
none), precision and recall per rule: precision = hits that were expected / hits, recall =
hits that were expected / calls expected to be hit (none when the denominator is 0). Files
the labels do not name are counted but not judged.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from qa.commands._output import dumps
from qa.errors import ConfigError
from qa.files import read_text
from qa.models import DEFAULT_MODEL
from qa.types import EventKind
from qa.yamlcheck import check_yaml


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "backtest",
        help="run a rule pack over a folder of recorded calls",
        description="Replay every WAV in DIR (sorted) through the live pipeline with one model "
        "and print per rule how many calls it hit (took points off) and, for steps, on how many "
        "it was done; with --labels, precision and recall per rule at call level.",
    )
    parser.add_argument("dir", metavar="DIR", help="folder of WAV recordings (stereo: agent, "
                        "customer)")
    parser.add_argument("--rules", required=True, metavar="PACK", help="rule pack (YAML)")
    parser.add_argument("--labels", metavar="FILE",
                        help="YAML: file name -> list of rule ids expected to hit that call")
    parser.add_argument("--language", choices=("en", "zh", "auto"),
                        help="default: the rule pack's language")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or directory")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class CallOutcome:
    """What one recorded call produced.

    Attributes:
        file: The WAV's file name (the key used by labels files).
        call_id: The call id it was replayed as.
        hits: Rule ids that took points off the call.
        done: Step ids performed on the call (late or out of order included).
        total: The scorecard total.
        band: The scorecard's pay band.
        by_intent: Rule ids whose hit or done came only from matching by meaning (intent),
            not from a phrase.
    """

    file: str
    call_id: str
    hits: frozenset[str]
    done: frozenset[str]
    total: float
    band: str
    by_intent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RuleStats:
    """One rule over all the calls.

    Attributes:
        rule: The rule id.
        hits: Calls it took points off.
        done: Calls on which it was done (steps only).
        expected: Labelled calls it was expected to hit (None without labels).
        true_positives: Labelled calls it hit and was expected to hit (None without labels).
        labelled_hits: Labelled calls it hit, expected or not (None without labels).
        intent: Calls on which its hit or done came from matching by meaning only.
    """

    rule: str
    hits: int
    done: int
    expected: int | None = None
    intent: int = 0
    true_positives: int | None = None
    labelled_hits: int | None = None

    @property
    def precision(self) -> float | None:
        """Expected hits over hits on labelled calls; None without labels or hits."""
        if self.true_positives is None or not self.labelled_hits:
            return None
        return self.true_positives / self.labelled_hits

    @property
    def recall(self) -> float | None:
        """Expected hits over calls expected to be hit; None without labels or expectations."""
        if self.true_positives is None or not self.expected:
            return None
        return self.true_positives / self.expected


def wav_files(folder: Path) -> list[Path]:
    """The `*.wav` files of a folder, sorted by name.

    Raises:
        ConfigError: The folder is missing or holds no WAV file.
    """
    if not folder.is_dir():
        raise ConfigError(str(folder), "no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise ConfigError(str(folder), "no *.wav files in the folder")
    return files


def load_labels(path: Path, known_rules: Sequence[str], files: Sequence[str] = ()
                ) -> dict[str, frozenset[str]]:
    """Reads a labels file: a YAML mapping of file name to the rule ids expected to hit it.

    Args:
        path: The labels file.
        known_rules: Rule ids of the pack (labels naming others are errors).
        files: File names being back-tested; when given, a label for another file is an error.

    Returns:
        File name -> expected rule ids.

    Raises:
        ConfigError: Unreadable, not YAML, not a mapping of names to lists of known rule ids;
            names the file, the line and the field.
    """
    where = str(path)
    text = read_text(where)  # a regular file of at most 1 MiB, in UTF-8
    check_yaml(text, where)  # nesting depth and tags, before PyYAML builds it
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(where, f"not valid YAML: {getattr(exc, 'problem', exc)}",
                          line=line) from exc
    if root is None:
        raise ConfigError(where, "empty labels file; expected 'file.wav: [rule, ...]'")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(where, "expected a mapping 'file.wav: [rule, ...]'",
                          line=root.start_mark.line + 1)
    known = set(known_rules)
    out: dict[str, frozenset[str]] = {}
    for key, value in root.value:
        line = key.start_mark.line + 1
        if not isinstance(key, yaml.ScalarNode) or not key.value:
            raise ConfigError(where, "a key must be a file name", line=line)
        name = key.value
        if name in out:
            raise ConfigError(where, "file labelled twice", line=line, field=name)
        if files and name not in files:
            raise ConfigError(where, "no such file in the folder", line=line, field=name)
        if isinstance(value, yaml.ScalarNode) and value.tag.endswith(":null"):
            out[name] = frozenset()
            continue
        if not isinstance(value, yaml.SequenceNode):
            raise ConfigError(where, "expected a list of rule ids", line=line, field=name)
        rules = []
        for i, item in enumerate(value.value):
            item_line = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode) or item.value not in known:
                shown = item.value if isinstance(item, yaml.ScalarNode) else "a non-scalar"
                raise ConfigError(where, f"unknown rule {shown!r}; known: "
                                  f"{', '.join(sorted(known))}", line=item_line,
                                  field=f"{name}[{i}]")
            rules.append(item.value)
        out[name] = frozenset(rules)
    return out


def run_backtest(monitor, results, files: Sequence[Path]) -> list[CallOutcome]:
    """Replays each file as one call, one after the other, and returns what each produced.

    Args:
        monitor: A `qa.monitor.Monitor` with a rule pack.
        results: A `qa.commands.score.CallResults` among the monitor's listeners.
        files: The recordings, in the order to replay them.

    Returns:
        One outcome per file, in file order.
    """
    from qa.sources.file import FileOptions, FileSource

    outcomes = []
    for path in files:
        source = FileSource(FileOptions(path))
        monitor.run([source])
        summary = results.summaries[source.call_id]
        events = results.events.get(source.call_id, [])
        card = summary.scorecard
        outcomes.append(CallOutcome(
            file=path.name,
            call_id=source.call_id,
            hits=frozenset(e.rule_id for e in events if e.points < 0),
            done=frozenset(e.rule_id for e in events if e.kind == EventKind.STEP_DONE),
            total=card.total if card is not None else 0.0,
            band=card.band if card is not None else "",
            by_intent=_by_intent(events),
        ))
    return outcomes


def _by_intent(events) -> frozenset[str]:
    matched: dict[str, set[str]] = {}
    for e in events:
        if e.match and (e.points < 0 or e.kind == EventKind.STEP_DONE):
            matched.setdefault(e.rule_id, set()).add(e.match)
    return frozenset(rule for rule, kinds in matched.items() if kinds == {"intent"})


def rule_stats(rules: Sequence[str], outcomes: Sequence[CallOutcome],
               labels: Mapping[str, frozenset[str]] | None = None) -> list[RuleStats]:
    """Per-rule counts over the calls (see the module docstring), in `rules` order; rules
    not in `rules` that hit a call are appended."""
    ordered = list(rules)
    for outcome in outcomes:
        ordered += sorted(r for r in outcome.hits if r not in ordered)
    out = []
    for rule in ordered:
        hits = sum(rule in o.hits for o in outcomes)
        done = sum(rule in o.done for o in outcomes)
        intent = sum(rule in o.by_intent for o in outcomes)
        if labels is None:
            out.append(RuleStats(rule, hits, done, intent=intent))
            continue
        judged = [o for o in outcomes if o.file in labels]
        out.append(RuleStats(
            rule, hits, done,
            expected=sum(rule in labels[o.file] for o in judged),
            true_positives=sum(rule in o.hits and rule in labels[o.file] for o in judged),
            labelled_hits=sum(rule in o.hits for o in judged),
            intent=intent,
        ))
    return out


def report(outcomes: Sequence[CallOutcome], stats: Sequence[RuleStats]) -> dict:
    """The JSON document `qa backtest --json` prints."""
    return {
        "calls": [
            {"file": o.file, "call": o.call_id, "total": o.total, "band": o.band,
             "hits": sorted(o.hits), "done": sorted(o.done), "by_intent": sorted(o.by_intent)}
            for o in outcomes
        ],
        "rules": [
            {"rule": s.rule, "hits": s.hits, "done": s.done, "intent": s.intent,
             "expected": s.expected,
             "true_positives": s.true_positives, "precision": s.precision, "recall": s.recall}
            for s in stats
        ],
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> int:
    from qa.commands.score import CallResults
    from qa.monitor import Monitor, MonitorOptions
    from qa.pipeline import PipelineOptions
    from qa.rules import load_pack

    # Everything that can be wrong with the input is checked before the model is loaded.
    files = wav_files(Path(args.dir))
    pack = load_pack(args.rules)
    rules = pack.rule_ids()
    labels = None
    if args.labels:
        labels = load_labels(Path(args.labels), rules, [f.name for f in files])
    language = None if args.language in (None, "auto") else args.language
    options = MonitorOptions(pipeline=PipelineOptions(language=language), model=args.model,
                             rules=Path(args.rules))
    results = CallResults()
    with Monitor(options, [results]) as monitor:
        outcomes = run_backtest(monitor, results, files)
    stats = rule_stats(rules, outcomes, labels)
    if args.json:
        print(dumps(report(outcomes, stats)))
        return 0
    print(f"# {len(outcomes)} calls from {args.dir}, rules {pack.name}")
    for o in outcomes:
        hit = ", ".join(sorted(o.hits)) or "-"
        print(f"  {o.file}: {o.total:g}/100 ({o.band}), hit: {hit}")
    header = f"{'rule':<16} {'hits':>5} {'done':>5} {'intent':>6}"
    if labels is not None:
        header += f" {'expected':>8} {'precision':>9} {'recall':>7}"
    print(header)
    for s in stats:
        line = f"{s.rule:<16} {s.hits:>5} {s.done:>5} {s.intent:>6}"
        if labels is not None:
            line += f" {s.expected:>8} {_ratio(s.precision):>9} {_ratio(s.recall):>7}"
        print(line)
    return 0
