"""Edits to a rule pack's YAML text that keep everything else as the author wrote it.

`qa rules tune --write` records calibrated thresholds and folds reviewers' labels into a
rule's `examples` / `counter_examples`. The pack is the centre's document, with its comments
and layout, so these edits change only the lines they must: a `threshold:` value replaced or
a line inserted after the rule's `id:`, list items appended after the last item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

from qa.errors import RuleFileError

_SECTIONS = ("steps", "forbidden", "categories", "triggers")


@dataclass(frozen=True, slots=True)
class Addition:
    """One text to append to a rule's `examples` or `counter_examples`, with a comment."""

    rule_id: str
    key: str  # "examples" or "counter_examples"
    text: str
    comment: str = ""


def _rules(source: str, path: str) -> dict[str, yaml.MappingNode]:
    root = yaml.compose(source, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise RuleFileError(path, "not a rule pack")
    out = {}
    for key, value in root.value:
        if key.value in _SECTIONS and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if k.value == "id" and isinstance(v, yaml.ScalarNode):
                            out[v.value] = item
    return out


def _entry(node: yaml.MappingNode, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    return next(((k, v) for k, v in node.value if k.value == name), None)


def _id_key(node: yaml.MappingNode) -> yaml.Node:
    """The `id` key of a rule's mapping (the pack was validated: every rule has one)."""
    found = _entry(node, "id")
    assert found is not None
    return found[0]


def _line_end(source: str, index: int) -> int:
    end = source.find("\n", index)
    return len(source) if end < 0 else end + 1


def _apply(source: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        source = source[:start] + text + source[end:]
    return source


def set_thresholds(source: str, thresholds: Mapping[str, float], path: str = "<pack>") -> str:
    """Writes `threshold: X` into each named rule (replacing an existing value).

    Raises:
        RuleFileError: A named rule is not in the pack.
    """
    rules = _rules(source, path)
    edits = []
    for rule_id, value in thresholds.items():
        node = rules.get(rule_id)
        if node is None:
            raise RuleFileError(path, f"no rule '{rule_id}' to write a threshold to")
        text = f"{value:.2f}"
        found = _entry(node, "threshold")
        if found is not None:
            edits.append((found[1].start_mark.index, found[1].end_mark.index, text))
            continue
        key = _id_key(node)
        indent = " " * key.start_mark.column
        at = _line_end(source, key.start_mark.index)
        if node.flow_style:
            raise RuleFileError(path, f"rule '{rule_id}' is written inline; cannot add to it")
        edits.append((at, at, f"{indent}threshold: {text}  # qa rules tune\n"))
    return _apply(source, edits)


def add_examples(source: str, additions: Sequence[Addition], path: str = "<pack>") -> str:
    """Appends each text to its rule's `examples` or `counter_examples` (creating the list).

    Raises:
        RuleFileError: A named rule is not in the pack, or is written inline.
    """
    rules = _rules(source, path)
    grouped: dict[tuple[str, str], list[Addition]] = {}
    for add in additions:
        grouped.setdefault((add.rule_id, add.key), []).append(add)
    edits = []
    for (rule_id, key), adds in grouped.items():
        node = rules.get(rule_id)
        if node is None:
            raise RuleFileError(path, f"no rule '{rule_id}' to add examples to")
        if node.flow_style:
            raise RuleFileError(path, f"rule '{rule_id}' is written inline; cannot add to it")
        found = _entry(node, key)
        if found is not None and isinstance(found[1], yaml.SequenceNode):
            seq = found[1]
            if seq.flow_style or not seq.value:
                items = [n.value for n in seq.value] + [a.text for a in adds]
                flow = "[" + ", ".join(json.dumps(t, ensure_ascii=False) for t in items) + "]"
                edits.append((seq.start_mark.index, seq.end_mark.index, flow))
                continue
            last = seq.value[-1]
            column = last.start_mark.column - 2  # the "- " before the item
            at = _line_end(source, last.end_mark.index - 1 if last.end_mark.index else 0)
            lines = "".join(_item(" " * column, a) for a in adds)
            edits.append((at, at, lines))
            continue
        key_node = _id_key(node)
        indent = " " * key_node.start_mark.column
        at = _line_end(source, key_node.start_mark.index)
        lines = f"{indent}{key}:\n" + "".join(_item(indent + "  ", a) for a in adds)
        edits.append((at, at, lines))
    return _apply(source, edits)


def _item(indent: str, add: Addition) -> str:
    comment = f"  # {add.comment}" if add.comment else ""
    return f"{indent}- {json.dumps(add.text, ensure_ascii=False)}{comment}\n"
