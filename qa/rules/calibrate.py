"""Labelled utterances: how well a pack's rules match them, and thresholds chosen from them.

A labelled file (JSON lines, `tests/data/intents/*/*.jsonl` is the committed set) holds one
utterance per line: `{"text": ..., "speaker": "agent"|"customer", "labels": [rule ids that
should fire on it], "kind": ...}`. Each utterance is judged as one segment by that speaker,
through the same `RuleDetector` that runs on live calls.

Calibration (`qa rules tune`) picks, per rule with examples, the lowest similarity threshold
at which the rule's precision on the labelled data reaches the target (0.95 by default):
phrase hits always count, intent hits from the threshold up. A rule whose precision target
cannot be met by meaning keeps phrase matching only (threshold 1.0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import ConfigError
from qa.rules.detect import RuleDetector
from qa.rules.schema import RulePack
from qa.types import Speaker

#: The most a labelled file may hold (bounded read).
MAX_LABELS_BYTES = 16 << 20
#: Thresholds tried by calibration.
GRID = tuple(round(-0.50 + 0.02 * i, 2) for i in range(101))
#: A rule that cannot reach its precision by meaning: phrases only.
PHRASES_ONLY = 2.0


@dataclass(frozen=True, slots=True)
class Labelled:
    """One labelled utterance: what was said, by whom, and which rules should fire on it."""

    text: str
    speaker: Speaker
    labels: frozenset[str]
    kind: str = ""
    id: str = ""


def load_labelled(path: str | Path, pack: RulePack | None = None) -> list[Labelled]:
    """Reads a JSON-lines file of labelled utterances.

    Args:
        path: The file.
        pack: When given, every label must be one of its rule ids.

    Raises:
        ConfigError: Unreadable, too large, or a line that breaks the format (file, line and
            field named).
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(str(path), "not a regular file")
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ConfigError(str(path), f"larger than {MAX_LABELS_BYTES >> 20} MiB")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from exc
    known = {r.id for r in pack.matchable()} if pack is not None else None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(str(path), f"not JSON: {exc}", line=number) from exc
        if not isinstance(row, dict):
            raise ConfigError(str(path), "must be a JSON object", line=number)
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(str(path), "must be a non-empty string", line=number, field="text")
        try:
            speaker = Speaker(row.get("speaker", "agent"))
        except ValueError:
            raise ConfigError(str(path), "must be agent, customer or unknown", line=number,
                              field="speaker") from None
        labels = row.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ConfigError(str(path), "must be a list of rule ids", line=number,
                              field="labels")
        unknown = [x for x in labels if known is not None and x not in known]
        if unknown:
            raise ConfigError(str(path), f"unknown rule id '{unknown[0]}'", line=number,
                              field="labels")
        out.append(Labelled(text.strip(), speaker, frozenset(labels), str(row.get("kind", "")),
                            str(row.get("id", number))))
    return out


@dataclass(slots=True)
class RuleStats:
    """Counts of one rule (or of several pooled) over labelled utterances."""

    rule: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    intent_tp: int = 0
    intent_fp: int = 0

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP); None when the rule never fired."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN); None when no utterance should fire it."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass(slots=True)
class Evaluation:
    """Per-rule and pooled counts, with the utterances each rule got wrong."""

    rules: dict[str, RuleStats]
    pooled: RuleStats
    errors: list[tuple[str, Labelled, str]] = field(default_factory=list)


def evaluate(detector: RuleDetector, data: Iterable[Labelled],
             rules: Sequence[str] | None = None) -> Evaluation:
    """Runs every utterance through `detector` and counts, per rule, hits against labels.

    Args:
        detector: What decides (phrases only, or phrases and intents).
        data: Labelled utterances.
        rules: The rules to count (default: every rule of the pack).

    Returns:
        The counts; `errors` lists (rule, utterance, `fp`|`fn`).
    """
    from qa.types import Segment

    wanted = list(rules) if rules is not None else [r.id for r in detector.pack.matchable()]
    stats = {r: RuleStats(r) for r in wanted}
    errors = []
    for item in data:
        hits = detector.detect(Segment("eval", item.speaker, 0.0, 0.0, item.text))
        fired = {h.rule_id: h.kind.value for h in hits}
        for rule in wanted:
            st = stats[rule]
            if rule in fired and rule in item.labels:
                st.tp += 1
                st.intent_tp += fired[rule] == "intent"
            elif rule in fired:
                st.fp += 1
                st.intent_fp += fired[rule] == "intent"
                errors.append((rule, item, "fp"))
            elif rule in item.labels:
                st.fn += 1
                errors.append((rule, item, "fn"))
    pooled = RuleStats("all")
    for st in stats.values():
        pooled.tp += st.tp
        pooled.fp += st.fp
        pooled.fn += st.fn
        pooled.intent_tp += st.intent_tp
        pooled.intent_fp += st.intent_fp
    return Evaluation(stats, pooled, errors)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The threshold chosen for one rule, with its precision and recall on the data."""

    rule: str
    old: float
    threshold: float
    precision: float | None
    recall: float | None
    positives: int


def tune(detector: RuleDetector, data: Sequence[Labelled], precision: float = 0.95
         ) -> list[Calibration]:
    """Chooses each intent rule's threshold for a target precision on `data`.

    Args:
        detector: The pack's detector with its intents.
        data: Labelled utterances (the tune half; never the data you evaluate on).
        precision: The precision each rule must reach.

    Returns:
        One calibration per rule that has examples.
    """
    intents = detector.intents
    if intents is None:
        return []
    # Per utterance, once: which rules phrases hit, and each rule's clear intent score.
    scored = []
    for item in data:
        phrases, scores = detector.explain(item.text, item.speaker)
        by_rule = {s.rule_id: s.score for s in scores if s.clear}
        scored.append((item, {h.rule_id for h in phrases}, by_rule))
    out = []
    for rule in intents.rules:
        rid = rule.rule_id
        allowed = [(i, p, s) for i, p, s in scored if rid in detector.rules_for(i.speaker)]
        positives = sum(1 for i, _, _ in allowed if rid in i.labels)
        best = None
        for t in GRID:
            tp = fp = fn = 0
            for item, phrased, by_rule in allowed:
                fired = rid in phrased or by_rule.get(rid, -1.0) >= t
                should = rid in item.labels
                tp += fired and should
                fp += fired and not should
                fn += should and not fired
            p = tp / (tp + fp) if tp + fp else None
            r = tp / (tp + fn) if tp + fn else None
            if p is not None and p >= precision:
                best = Calibration(rid, intents.threshold(rid), t, p, r, positives)
                break
        if best is None:
            best = Calibration(rid, intents.threshold(rid), PHRASES_ONLY, None, None, positives)
        out.append(best)
    return out
