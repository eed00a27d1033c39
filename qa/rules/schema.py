"""Rule packs: the frozen dataclasses and the YAML loader that validates them.

The schema is documented in docs/rules.md and, machine-readably, in docs/rules.schema.json;
`ALLOWED_KEYS` below is the loader's side of that contract (a test checks they agree). Every
error is a `RuleFileError` naming the file, the line and the dotted field path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from qa.errors import RuleFileError
from qa.rules.intents import IntentOptions
from qa.rules.matcher import MatchOptions
from qa.types import Severity, Speaker

LANGUAGES = ("en", "zh", "auto")
SPEAKERS = ("agent", "customer", "any")
#: The scorecard is out of 100 points; a pack's rule points must add up to this.
TOTAL_POINTS = 100.0
#: Keys every matchable rule (step, forbidden, category, trigger) may carry for intents.
INTENT_KEYS = ("examples", "counter_examples", "threshold", "behaviour")

ALLOWED_KEYS: dict[str, frozenset[str]] = {
    "pack": frozenset(
        {
            "name",
            "language",
            "description",
            "matching",
            "steps",
            "forbidden",
            "handle_time",
            "conditions",
            "categories",
            "triggers",
            "intents",
        }
    ),
    "matching": frozenset({"fuzzy", "pinyin", "fuzzy_threshold", "word_similarity", "max_near"}),
    "intents": frozenset(
        {"enabled", "threshold", "library", "veto", "ridge", "exclusive", "counter", "ngrams",
         "pinyin", "turn", "kernel", "gamma", "forbidden_threshold"}
    ),
    "step": frozenset(
        {
            "id",
            "description",
            "speaker",
            "phrases",
            "deadline",
            "trigger",
            "after",
            "points",
            "prompt",
            *INTENT_KEYS,
        }
    ),
    "deadline": frozenset({"within", "from"}),
    "forbidden": frozenset(
        {"id", "description", "speaker", "phrases", "severity", "points", "prompt", *INTENT_KEYS}
    ),
    "handle_time": frozenset({"limit", "warnings", "points", "action", "warning_prompt"}),
    "conditions": frozenset({"dead_air", "talk_over", "talk_share"}),
    "dead_air": frozenset({"seconds", "points", "prompt"}),
    "talk_over": frozenset({"seconds", "points", "prompt"}),
    "talk_share": frozenset({"min", "max", "points", "prompt"}),
    "category": frozenset({"id", "speaker", "phrases", "priority", *INTENT_KEYS}),
    "trigger": frozenset({"id", "speaker", "phrases", *INTENT_KEYS}),
}


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a step must be done by.

    Attributes:
        within: Seconds after the reference point; `None` means "by the end of the call".
        origin: `start` (call start), `trigger` (the end of the segment that fired the
            step's trigger), or the id of another step (the time that step was done).
    """

    within: float | None = None
    origin: str = "start"


@dataclass(frozen=True, slots=True)
class Step:
    """A script step the agent must perform.

    Attributes:
        id: Unique rule id.
        phrases: Any of these, said by `speaker`, performs the step.
        points: Scorecard points this step is worth.
        prompt: Shown to the agent when the step is due or missed.
        speaker: `agent`, `customer` or `any`.
        deadline: When it must be done by.
        trigger: A category, trigger or step id; when set, the step only applies once the
            trigger fired, and only speech after that counts.
        after: Steps that must be done before this one (order constraint).
        description: One line for the scorecard.
        examples: Utterances that perform the step, for matching by meaning.
        counter_examples: Near misses that must not count.
        threshold: Calibrated intent threshold (None: the pack's default).
        behaviour: A behaviour of the built-in library (`qa/rules/library/`) whose examples
            count as this rule's own.
    """

    id: str
    phrases: tuple[str, ...]
    points: float
    prompt: str
    speaker: str = "agent"
    deadline: Deadline = Deadline()
    trigger: str | None = None
    after: tuple[str, ...] = ()
    description: str = ""
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()
    threshold: float | None = None
    behaviour: str | None = None


@dataclass(frozen=True, slots=True)
class Forbidden:
    """Things a speaker must never say: phrases, and examples of the behaviour by meaning."""

    id: str
    phrases: tuple[str, ...]
    points: float
    prompt: str
    speaker: str = "agent"
    severity: Severity = Severity.CRITICAL
    description: str = ""
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()
    threshold: float | None = None
    behaviour: str | None = None


@dataclass(frozen=True, slots=True)
class HandleTime:
    """The handle-time limit with staged warnings.

    Attributes:
        limit: Seconds of call after which the limit is breached.
        warnings: Seconds at which the agent is warned, ascending, all below `limit`.
        points: Scorecard points lost on a breach.
        action: What the agent must do (shown with the warning and the breach).
        warning_prompt: Shown at a warning; `{elapsed}` and `{action}` are filled in.
    """

    limit: float = 300.0
    warnings: tuple[float, ...] = (240.0,)
    points: float = 0.0
    action: str = "Transfer the caller to the specialist line."
    warning_prompt: str = "{elapsed} elapsed: wrap up or {action}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """Dead air or talk-over: fires when the condition lasts longer than `seconds`."""

    seconds: float
    points: float = 0.0
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class TalkShare:
    """The agent's share of all speech time must stay within `[min, max]`."""

    min: float = 0.0
    max: float = 1.0
    points: float = 0.0
    prompt: str = ""


@dataclass(frozen=True, slots=True)
class Conditions:
    """Conversation conditions; `None` means not checked."""

    dead_air: Threshold | None = None
    talk_over: Threshold | None = None
    talk_share: TalkShare | None = None


@dataclass(frozen=True, slots=True)
class PhraseSet:
    """A category or a trigger: named phrases said by a speaker.

    Attributes:
        id: The name (`complaint`, `urgent`, ...).
        phrases: Any of these marks it.
        speaker: Whose speech counts (`customer` by default).
        priority: For categories, higher wins as the call's main category.
        examples: Utterances that mark it, for matching by meaning.
        counter_examples: Near misses that must not.
        threshold: Calibrated intent threshold (None: the pack's default).
        behaviour: A behaviour of the built-in library (`qa/rules/library/`) whose examples
            count as this rule's own.
    """

    id: str
    phrases: tuple[str, ...]
    speaker: str = "customer"
    priority: int = 0
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()
    threshold: float | None = None
    behaviour: str | None = None


DEFAULT_CATEGORIES: dict[str, tuple[PhraseSet, ...]] = {
    "en": (
        PhraseSet(
            "consultation",
            ("i would like to know", "can you tell me", "i have a question", "how do i"),
            priority=1,
        ),
        PhraseSet(
            "complaint",
            (
                "i want to complain",
                "complaint",
                "this is unacceptable",
                "i was charged twice",
                "double charge",
            ),
            priority=3,
        ),
        PhraseSet(
            "suggestion",
            ("i suggest", "suggestion", "you should", "it would be better if"),
            priority=2,
        ),
        PhraseSet("urgent", ("urgent", "emergency", "right now", "immediately"), priority=4),
    ),
    "zh": (
        PhraseSet("consultation", ("咨询", "请问", "我想了解", "想问一下"), priority=1),
        PhraseSet("complaint", ("投诉", "太差了", "不满意", "多扣了"), priority=3),
        PhraseSet("suggestion", ("建议", "希望你们", "意见"), priority=2),
        PhraseSet("urgent", ("紧急", "马上", "急事", "赶快"), priority=4),
    ),
}
DEFAULT_CATEGORIES["auto"] = tuple(
    PhraseSet(en.id, en.phrases + zh.phrases, en.speaker, en.priority)
    for en, zh in zip(DEFAULT_CATEGORIES["en"], DEFAULT_CATEGORIES["zh"], strict=True)
)


@dataclass(frozen=True, slots=True)
class RulePack:
    """A validated rule pack.

    Attributes:
        name: Pack name (defaults to the file stem).
        language: `en`, `zh` or `auto`.
        steps: Script steps.
        forbidden: Forbidden phrase rules.
        handle_time: The handle-time limit (always present; defaults per the centre standard).
        conditions: Dead air, talk-over and talk share.
        categories: Call categories (the four defaults when the pack names none).
        triggers: Extra named phrase sets that steps can use as triggers.
        matching: Matching tolerances.
        description: Free text.
        path: Where it was loaded from.
        intents: Matching by meaning (examples, thresholds).
    """

    name: str
    language: str = "auto"
    steps: tuple[Step, ...] = ()
    forbidden: tuple[Forbidden, ...] = ()
    handle_time: HandleTime = HandleTime()
    conditions: Conditions = Conditions()
    categories: tuple[PhraseSet, ...] = ()
    triggers: tuple[PhraseSet, ...] = ()
    matching: MatchOptions = MatchOptions()
    description: str = ""
    path: str = ""
    intents: IntentOptions = IntentOptions()

    def rule_ids(self) -> list[str]:
        """Ids of every rule that can take points off or be done on a call, in pack order."""
        ids = [s.id for s in self.steps] + [f.id for f in self.forbidden] + ["handle_time"]
        ids += [name for name in ("dead_air", "talk_over", "talk_share")
                if getattr(self.conditions, name) is not None]
        return ids

    def matchable(self) -> tuple[Step | Forbidden | PhraseSet, ...]:
        """Every rule that phrases or examples can match: steps, forbidden, categories,
        triggers."""
        return (*self.steps, *self.forbidden, *self.categories, *self.triggers)

    def has_intents(self) -> bool:
        """True when intents are on and some rule has examples or a behaviour."""
        return self.intents.enabled and any(
            r.examples or r.behaviour for r in self.matchable()
        )

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError when there is none)."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


# --- loader -----------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"


class _Ctx:
    """The file being loaded, to build errors that name it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.language = "auto"  # set once the pack's language is read

    def error(self, node: yaml.Node | None, field: str | None, reason: str) -> RuleFileError:
        line = node.start_mark.line + 1 if node is not None else None
        return RuleFileError(self.path, reason, line=line, field=field or None)

    def mapping(self, node: yaml.Node, field: str, kind: str) -> dict[str, tuple[Any, Any]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, field, f"must be a mapping, not {_describe(node)}")
        allowed = ALLOWED_KEYS[kind]
        out: dict[str, tuple[Any, Any]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            where = f"{field}.{name}" if field else str(name)
            if name not in allowed:
                raise self.error(
                    key, where, f"unknown key '{name}'; allowed: {', '.join(sorted(allowed))}"
                )
            if name in out:
                raise self.error(key, where, "duplicate key")
            out[name] = (key, value)
        return out

    def require(self, m: dict, parent: yaml.Node, field: str, key: str) -> Any:
        if key not in m:
            where = f"{field}.{key}" if field else key
            raise self.error(parent, where, "missing required field")
        return m[key][1]

    def scalar(self, node: yaml.Node, field: str, kinds: tuple[str, ...]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, field, f"must be {' or '.join(kinds)}, not {_describe(node)}")
        tag = node.tag[len(_TAG) :] if node.tag.startswith(_TAG) else node.tag
        if tag == "str" and "str" in kinds:
            return node.value
        if tag == "bool" and "bool" in kinds:
            return node.value.lower() in ("true", "yes", "on")
        if tag in ("int", "float") and "number" in kinds:
            value = float(yaml.safe_load(node.value))
            if not math.isfinite(value):
                raise self.error(node, field, "must be a finite number")
            return value
        if tag == "int" and "int" in kinds:
            return int(node.value)
        raise self.error(node, field, f"must be {' or '.join(kinds)}, not {_describe(node)}")

    def integer(self, node: yaml.Node, field: str, lo: int, hi: int) -> int:
        value = self.scalar(node, field, ("int",))
        if not lo <= value <= hi:
            raise self.error(node, field, f"must be between {lo} and {hi}, got {value}")
        return value

    def text(self, node: yaml.Node, field: str) -> str:
        value = self.scalar(node, field, ("str",)).strip()
        if not value:
            raise self.error(node, field, "must not be empty")
        return value

    def number(self, node: yaml.Node, field: str, lo: float = 0.0, hi: float = math.inf) -> float:
        value = self.scalar(node, field, ("number",))
        if not lo <= value <= hi:
            raise self.error(node, field, f"must be between {lo:g} and {hi:g}, got {value:g}")
        return value

    def choice(self, node: yaml.Node, field: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, field, ("str",))
        if value not in choices:
            raise self.error(node, field, f"must be one of {', '.join(choices)}, got '{value}'")
        return value

    def phrases(self, node: yaml.Node, field: str, what: str = "phrase") -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, field, f"must be a list of {what}s, not {_describe(node)}")
        if not node.value:
            raise self.error(node, field, f"must list at least one {what}")
        return tuple(self.text(item, f"{field}[{i}]") for i, item in enumerate(node.value))

    def behaviour(self, node: yaml.Node, field: str) -> str:
        from qa.rules.behaviours import behaviour_names

        name = self.text(node, field)
        known = behaviour_names(self.language)
        if name not in known:
            raise self.error(
                node, field, f"unknown behaviour '{name}'; the library has: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        return name

    def intent(self, m: dict, node: yaml.Node, field: str) -> dict[str, Any]:
        """`phrases`, `examples`, `counter_examples` and `threshold` of a matchable rule."""
        if "phrases" not in m and "examples" not in m and "behaviour" not in m:
            raise self.error(
                node, f"{field}.phrases", "missing required field (or 'examples', 'behaviour')"
            )
        out: dict[str, Any] = {
            "phrases": _optional(m, "phrases", self.phrases, field, ()),
            "examples": _optional(
                m, "examples", lambda n, f: self.phrases(n, f, "example"), field, ()
            ),
            "counter_examples": _optional(
                m, "counter_examples", lambda n, f: self.phrases(n, f, "counter-example"),
                field, (),
            ),
            "threshold": _optional(
                m, "threshold", lambda n, f: self.number(n, f, -2.0, 2.0), field, None
            ),
            "behaviour": _optional(m, "behaviour", self.behaviour, field, None),
        }
        if out["counter_examples"] and not out["examples"] and not out["behaviour"]:
            raise self.error(
                m["counter_examples"][0], f"{field}.counter_examples",
                "counter-examples need examples to be compared with",
            )
        return out

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, field, f"must be a list, not {_describe(node)}")
        return list(node.value)


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    names = {
        "str": "a string",
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean",
        "null": "empty (null)",
    }
    return f"{names.get(tag, tag)} ({node.value!r})" if tag != "null" else names["null"]


def _optional(m: dict, key: str, conv: Callable[[Any, str], Any], field: str, default: Any) -> Any:
    if key not in m:
        return default
    return conv(m[key][1], f"{field}.{key}" if field else key)


def load_pack(path: str | Path) -> RulePack:
    """Loads and validates a rule pack.

    Args:
        path: A YAML file following docs/rules.md.

    Returns:
        The pack.

    Raises:
        RuleFileError: The file is unreadable, not YAML, or breaks the schema; the error
            names the file, the line and the dotted field (e.g. `steps[2].phrases`).
    """
    path = str(path)
    source = _read_pack(path)
    return loads_pack(source, path)


def loads_pack(source: str, path: str = "<string>") -> RulePack:
    """Like `load_pack`, from YAML text; `path` names it in errors."""
    ctx = _Ctx(path)
    _check_source(source, path)
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RuleFileError(path, f"not valid YAML: {exc.problem}", line=line) from exc
    except yaml.YAMLError as exc:
        raise RuleFileError(path, f"not valid YAML: {exc}") from exc
    if root is None:
        raise RuleFileError(path, "empty rule file")
    top = ctx.mapping(root, "", "pack")
    name = _optional(top, "name", ctx.text, "", Path(path).stem)
    language = _optional(top, "language", lambda n, f: ctx.choice(n, f, LANGUAGES), "", None)
    if language is None:
        raise ctx.error(root, "language", "missing required field")
    ctx.language = language
    description = _optional(top, "description", ctx.text, "", "")
    matching = _optional(top, "matching", lambda n, f: _matching(ctx, n, f), "", MatchOptions())
    intents = _optional(top, "intents", lambda n, f: _intents(ctx, n, f), "", IntentOptions())
    steps_nodes = ctx.sequence(top["steps"][1], "steps") if "steps" in top else []
    steps = tuple(_step(ctx, n, f"steps[{i}]") for i, n in enumerate(steps_nodes))
    forb_nodes = ctx.sequence(top["forbidden"][1], "forbidden") if "forbidden" in top else []
    forbidden = tuple(_forbidden(ctx, n, f"forbidden[{i}]") for i, n in enumerate(forb_nodes))
    handle = _optional(top, "handle_time", lambda n, f: _handle_time(ctx, n, f), "", HandleTime())
    conditions = _optional(top, "conditions", lambda n, f: _conditions(ctx, n, f), "", Conditions())
    if "categories" in top:
        cat_nodes = ctx.sequence(top["categories"][1], "categories")
        categories = tuple(
            _phrase_set(ctx, n, f"categories[{i}]", "category") for i, n in enumerate(cat_nodes)
        )
    else:
        categories = DEFAULT_CATEGORIES[language]
    trig_nodes = ctx.sequence(top["triggers"][1], "triggers") if "triggers" in top else []
    triggers = tuple(
        _phrase_set(ctx, n, f"triggers[{i}]", "trigger") for i, n in enumerate(trig_nodes)
    )
    pack = RulePack(
        name,
        language,
        steps,
        forbidden,
        handle,
        conditions,
        categories,
        triggers,
        matching,
        description,
        path,
        intents,
    )
    _check_references(
        ctx, pack, steps_nodes, cat_nodes if "categories" in top else [], forb_nodes, trig_nodes
    )
    _check_points(ctx, pack, root)
    _check_texts(ctx, pack, root)
    return pack


def _matching(ctx: _Ctx, node: yaml.Node, field: str) -> MatchOptions:
    m = ctx.mapping(node, field, "matching")
    d = MatchOptions()

    def flag(n: yaml.Node, f: str) -> bool:
        return ctx.scalar(n, f, ("bool",))

    return MatchOptions(
        fuzzy=_optional(m, "fuzzy", flag, field, d.fuzzy),
        pinyin=_optional(m, "pinyin", flag, field, d.pinyin),
        fuzzy_threshold=_optional(
            m, "fuzzy_threshold", lambda n, f: ctx.number(n, f, 0.5, 1.0), field, d.fuzzy_threshold
        ),
        word_similarity=_optional(
            m, "word_similarity", lambda n, f: ctx.number(n, f, 0.5, 1.0), field, d.word_similarity
        ),
        max_near=_optional(m, "max_near", lambda n, f: ctx.integer(n, f, 0, 5), field, d.max_near),
    )


def _intents(ctx: _Ctx, node: yaml.Node, field: str) -> IntentOptions:
    m = ctx.mapping(node, field, "intents")
    d = IntentOptions()

    def num(key: str, lo: float, hi: float) -> float:
        return _optional(m, key, lambda n, f: ctx.number(n, f, lo, hi), field, getattr(d, key))

    def flag(key: str) -> bool:
        return _optional(m, key, lambda n, f: ctx.scalar(n, f, ("bool",)), field, getattr(d, key))

    return IntentOptions(
        enabled=flag("enabled"),
        threshold=num("threshold", -2.0, 2.0),
        library=flag("library"),
        veto=num("veto", -2.0, 2.0),
        ridge=num("ridge", 0.001, 100.0),
        exclusive=num("exclusive", 0.0, 4.0) if "exclusive" in m else d.exclusive,
        counter=num("counter", 0.0, 1.0),
        ngrams=num("ngrams", 0.0, 10.0),
        pinyin=num("pinyin", 0.0, 10.0),
        turn=num("turn", 0.0, 4.0) if "turn" in m else d.turn,
        kernel=num("kernel", 0.0, 10.0),
        gamma=num("gamma", 0.01, 100.0),
        forbidden_threshold=(num("forbidden_threshold", -2.0, 2.0)
                             if "forbidden_threshold" in m else d.forbidden_threshold),
    )


def _deadline(ctx: _Ctx, node: yaml.Node, field: str) -> Deadline:
    if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str":
        if node.value != "end":
            raise ctx.error(node, field, f"must be 'end' or a mapping, got '{node.value}'")
        return Deadline(None, "start")
    m = ctx.mapping(node, field, "deadline")
    within = ctx.number(ctx.require(m, node, field, "within"), f"{field}.within", 0.0)
    origin = _optional(m, "from", ctx.text, field, "start")
    return Deadline(within, origin)


def _step(ctx: _Ctx, node: yaml.Node, field: str) -> Step:
    m = ctx.mapping(node, field, "step")
    deadline = _optional(m, "deadline", lambda n, f: _deadline(ctx, n, f), field, Deadline())
    trigger = _optional(m, "trigger", ctx.text, field, None)
    if trigger is not None and "deadline" in m and "from" not in _keys(m["deadline"][1]):
        deadline = Deadline(deadline.within, "trigger")
    elif trigger is not None and "deadline" not in m:
        deadline = Deadline(None, "trigger")
    after = _optional(m, "after", lambda n, f: _ids(ctx, n, f), field, ())
    return Step(
        id=ctx.text(ctx.require(m, node, field, "id"), f"{field}.id"),
        **ctx.intent(m, node, field),
        points=ctx.number(ctx.require(m, node, field, "points"), f"{field}.points", 0.0, 100.0),
        prompt=ctx.text(ctx.require(m, node, field, "prompt"), f"{field}.prompt"),
        speaker=_optional(m, "speaker", lambda n, f: ctx.choice(n, f, SPEAKERS), field, "agent"),
        deadline=deadline,
        trigger=trigger,
        after=after,
        description=_optional(m, "description", ctx.text, field, ""),
    )


def _keys(node: yaml.Node) -> set[str]:
    if isinstance(node, yaml.MappingNode):
        return {k.value for k, _ in node.value}
    return set()


def _ids(ctx: _Ctx, node: yaml.Node, field: str) -> tuple[str, ...]:
    if isinstance(node, yaml.ScalarNode):
        return (ctx.text(node, field),)
    return tuple(ctx.text(n, f"{field}[{i}]") for i, n in enumerate(ctx.sequence(node, field)))


def _forbidden(ctx: _Ctx, node: yaml.Node, field: str) -> Forbidden:
    m = ctx.mapping(node, field, "forbidden")
    severities = tuple(s.value for s in Severity)
    return Forbidden(
        id=ctx.text(ctx.require(m, node, field, "id"), f"{field}.id"),
        **ctx.intent(m, node, field),
        points=ctx.number(ctx.require(m, node, field, "points"), f"{field}.points", 0.0, 100.0),
        prompt=ctx.text(ctx.require(m, node, field, "prompt"), f"{field}.prompt"),
        speaker=_optional(m, "speaker", lambda n, f: ctx.choice(n, f, SPEAKERS), field, "agent"),
        severity=Severity(
            _optional(
                m,
                "severity",
                lambda n, f: ctx.choice(n, f, severities),
                field,
                Severity.CRITICAL.value,
            )
        ),
        description=_optional(m, "description", ctx.text, field, ""),
    )


def _handle_time(ctx: _Ctx, node: yaml.Node, field: str) -> HandleTime:
    m = ctx.mapping(node, field, "handle_time")
    d = HandleTime()
    limit = _optional(m, "limit", lambda n, f: ctx.number(n, f, 1.0), field, d.limit)
    warnings = d.warnings if limit == d.limit else tuple(w for w in d.warnings if w < limit)
    if "warnings" in m:
        wnode = m["warnings"][1]
        wfield = f"{field}.warnings"
        items = ctx.sequence(wnode, wfield)
        warnings = tuple(ctx.number(n, f"{wfield}[{i}]", 0.0) for i, n in enumerate(items))
        if list(warnings) != sorted(set(warnings)) or any(w >= limit for w in warnings):
            raise ctx.error(wnode, wfield, "must be ascending, distinct and below the limit")
    return HandleTime(
        limit=limit,
        warnings=warnings,
        points=_optional(m, "points", lambda n, f: ctx.number(n, f, 0.0, 100.0), field, d.points),
        action=_optional(m, "action", ctx.text, field, d.action),
        warning_prompt=_optional(m, "warning_prompt", ctx.text, field, d.warning_prompt),
    )


def _conditions(ctx: _Ctx, node: yaml.Node, field: str) -> Conditions:
    m = ctx.mapping(node, field, "conditions")

    def threshold(kind: str) -> Threshold | None:
        if kind not in m:
            return None
        sub, f = m[kind][1], f"{field}.{kind}"
        sm = ctx.mapping(sub, f, kind)
        return Threshold(
            seconds=ctx.number(ctx.require(sm, sub, f, "seconds"), f"{f}.seconds", 0.1),
            points=_optional(sm, "points", lambda n, x: ctx.number(n, x, 0.0, 100.0), f, 0.0),
            prompt=_optional(sm, "prompt", ctx.text, f, ""),
        )

    share = None
    if "talk_share" in m:
        sub, f = m["talk_share"][1], f"{field}.talk_share"
        sm = ctx.mapping(sub, f, "talk_share")
        share = TalkShare(
            min=_optional(sm, "min", lambda n, x: ctx.number(n, x, 0.0, 1.0), f, 0.0),
            max=_optional(sm, "max", lambda n, x: ctx.number(n, x, 0.0, 1.0), f, 1.0),
            points=_optional(sm, "points", lambda n, x: ctx.number(n, x, 0.0, 100.0), f, 0.0),
            prompt=_optional(sm, "prompt", ctx.text, f, ""),
        )
        if share.min > share.max:
            raise ctx.error(sub, f, "min must not exceed max")
    return Conditions(threshold("dead_air"), threshold("talk_over"), share)


def _phrase_set(ctx: _Ctx, node: yaml.Node, field: str, kind: str) -> PhraseSet:
    m = ctx.mapping(node, field, kind)
    return PhraseSet(
        id=ctx.text(ctx.require(m, node, field, "id"), f"{field}.id"),
        **ctx.intent(m, node, field),
        speaker=_optional(m, "speaker", lambda n, f: ctx.choice(n, f, SPEAKERS), field, "customer"),
        priority=_optional(m, "priority", lambda n, f: ctx.integer(n, f, 0, 100), field, 0),
    )


def _check_references(
    ctx: _Ctx,
    pack: RulePack,
    step_nodes: list,
    cat_nodes: list,
    forb_nodes: list,
    trig_nodes: list,
) -> None:
    seen: dict[str, str] = {}
    groups: tuple[tuple[str, tuple[Any, ...], list], ...] = (
        ("steps", pack.steps, step_nodes),
        ("forbidden", pack.forbidden, forb_nodes),
        ("categories", pack.categories, cat_nodes),
        ("triggers", pack.triggers, trig_nodes),
    )
    for section, rules, nodes in groups:
        for i, rule in enumerate(rules):
            if rule.id in seen:
                node = nodes[i] if i < len(nodes) else None
                raise ctx.error(
                    node,
                    f"{section}[{i}].id",
                    f"duplicate rule id '{rule.id}' (also in {seen[rule.id]})",
                )
            seen[rule.id] = section
    step_ids = {s.id for s in pack.steps}
    trigger_ids = step_ids | {c.id for c in pack.categories} | {t.id for t in pack.triggers}
    for i, step in enumerate(pack.steps):
        node, field = step_nodes[i], f"steps[{i}]"
        if step.trigger is not None and step.trigger not in trigger_ids - {step.id}:
            raise ctx.error(
                node,
                f"{field}.trigger",
                f"unknown trigger '{step.trigger}'; use a category, trigger or step id",
            )
        origin = step.deadline.origin
        if origin == "trigger" and step.trigger is None:
            raise ctx.error(
                node,
                f"{field}.deadline.from",
                "deadline from 'trigger' but the step has no trigger",
            )
        if origin not in ("start", "trigger") and origin not in step_ids - {step.id}:
            raise ctx.error(
                node,
                f"{field}.deadline.from",
                f"bad deadline reference '{origin}': not 'start', 'trigger' or another step's id",
            )
        for ref in step.after:
            if ref not in step_ids - {step.id}:
                raise ctx.error(node, f"{field}.after", f"unknown step '{ref}'")


def _check_points(ctx: _Ctx, pack: RulePack, root: yaml.Node) -> None:
    c = pack.conditions
    total = (
        sum(s.points for s in pack.steps)
        + sum(f.points for f in pack.forbidden)
        + pack.handle_time.points
        + sum(x.points for x in (c.dead_air, c.talk_over, c.talk_share) if x is not None)
    )
    if abs(total - TOTAL_POINTS) > 1e-6:
        raise ctx.error(
            root,
            "points",
            f"rule points add up to {total:g}; the scorecard is {TOTAL_POINTS:g} points",
        )


def speaker_matches(rule_speaker: str, speaker: Speaker) -> bool:
    """True when speech by `speaker` counts for a rule restricted to `rule_speaker`.

    Speech from a mono source (`unknown`) counts for every rule: there is no channel to
    tell agent from customer, and checking nothing would hide every violation.
    """
    return rule_speaker == "any" or speaker == Speaker.UNKNOWN or rule_speaker == speaker.value


# --- validation beyond the schema: what would otherwise fail later, in a running call -------

#: Largest rule pack read (1 MiB); real packs are a few KiB.
MAX_PACK_BYTES = 1 << 20
#: The placeholders `handle_time.warning_prompt` is filled with.
WARNING_FIELDS = frozenset({"elapsed", "action"})
#: A phrase of one Latin/digit word this short, or one CJK character, matches by accident
#: inside ordinary speech ("no" in "know now", "好" in every other sentence).
MIN_SINGLE_WORD = 3


def _read_pack(path: str) -> str:
    """The pack's text: a regular file of at most `MAX_PACK_BYTES`, in UTF-8."""
    from qa.files import read_text

    return read_text(path, limit=MAX_PACK_BYTES, error=RuleFileError)


def _check_source(source: str, path: str) -> None:
    """Size, nesting depth and tags of the YAML text, before PyYAML builds it."""
    from qa.yamlcheck import check_yaml

    if len(source) > MAX_PACK_BYTES or len(source.encode("utf-8")) > MAX_PACK_BYTES:
        raise RuleFileError(path, f"too large: over {MAX_PACK_BYTES >> 20} MiB (a rule pack "
                                  "is a few KiB)")
    check_yaml(source, path, RuleFileError)


def _node_at(root: yaml.Node, *steps: str | int) -> yaml.Node:
    """The node at a path of keys and indexes (or the deepest one found, for its line)."""
    node = root
    for step in steps:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            found = [v for k, v in node.value if getattr(k, "value", None) == step]
            if not found:
                return node
            node = found[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) \
                and step < len(node.value):
            node = node.value[step]
        else:
            return node
    return node


def _check_texts(ctx: _Ctx, pack: RulePack, root: yaml.Node) -> None:
    """Phrases that can match and prompt templates that can be filled in."""
    _check_warning_prompt(ctx, pack.handle_time.warning_prompt, root)
    groups: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("steps", pack.steps), ("forbidden", pack.forbidden), ("triggers", pack.triggers))
    if _node_at(root, "categories") is not root:
        groups += (("categories", pack.categories),)
    for section, rules in groups:
        for i, rule in enumerate(rules):
            for j, phrase in enumerate(rule.phrases):
                problem = _phrase_problem(phrase, pack.language)
                if problem:
                    raise ctx.error(_node_at(root, section, i, "phrases", j),
                                    f"{section}[{i}].phrases[{j}]", problem)


def _phrase_problem(phrase: str, language: str) -> str:
    """Why a phrase cannot work ('' when it can)."""
    from qa.rules.normalize import is_cjk, normalize

    text = normalize(phrase, language)
    if not text:
        return f"phrase {phrase!r} is only punctuation or symbols: it can never match"
    if " " in text:
        return ""
    if len(text) == 1 and is_cjk(text):
        return (f"phrase {phrase!r} is a single Chinese character: it would match inside "
                "ordinary speech; use a word of two or more characters")
    if not any(is_cjk(ch) for ch in text) and len(text) < MIN_SINGLE_WORD:
        return (f"phrase {phrase!r} is one word of {len(text)} letter(s): it would match "
                f"ordinary speech by accident; use {MIN_SINGLE_WORD}+ letters or several words")
    return ""


def _check_warning_prompt(ctx: _Ctx, template: str, root: yaml.Node) -> None:
    """`warning_prompt` is filled with `str.format`: every `{...}` must be a known field."""
    import string

    found = _node_at(root, "handle_time", "warning_prompt")
    node = found if isinstance(found, yaml.ScalarNode) else None
    field = "handle_time.warning_prompt"
    allowed = ", ".join("{" + name + "}" for name in sorted(WARNING_FIELDS))
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ctx.error(node, field, f"bad template ({exc}); write '{{{{' and '}}}}' for "
                                     f"literal braces; placeholders: {allowed}") from None
    for name in names:
        if name not in WARNING_FIELDS:
            shown = "{" + name + "}" if name else "{}"
            raise ctx.error(node, field, f"unknown placeholder {shown}; allowed: {allowed}")
    try:
        template.format(elapsed="04:00", action="transfer")
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise ctx.error(node, field, f"bad template: {exc}; placeholders: {allowed}") from None
