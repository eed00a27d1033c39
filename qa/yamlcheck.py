"""A guard run over every YAML file we load (rule packs, configurations, label files) before
PyYAML builds its node tree.

PyYAML's composer recurses once per nesting level, so a file nested a few thousand levels
deep ends in a `RecursionError` with thousands of lines of traceback; and an explicit tag such
as `!!python/object` is refused by the safe loader with a traceback of its own. The event
parser is iterative, so walking its events first catches both, with the line, and turns a
syntax error into the same one-line error.
"""

from __future__ import annotations

from collections.abc import Callable

import yaml

from qa.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "check_yaml", "compose_yaml"]

#: Deepest nesting of mappings and lists accepted; the deepest real file (a rule pack) is 5.
MAX_DEPTH = 32
#: Most values (scalars and collections, aliases counted as what they repeat) a file may
#: expand to. Aliases make a DAG that our loaders walk as a tree: 2,000 phrases under an
#: anchor and 200 rules naming it took 8 s to load; a 1 MiB file could take hours. The
#: largest real file (a rule pack) has a few thousand.
MAX_VALUES = 200_000
#: The only tags a settings file needs: YAML's core schema.
_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    {"!", *(_CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map"))}
)

ErrorType = Callable[..., ConfigError]


def _line(mark) -> int | None:
    return mark.line + 1 if mark is not None else None


def check_yaml(source: str, path: str, error: ErrorType = ConfigError) -> None:
    """Checks YAML text for syntax, nesting depth, size after aliases and tags, without
    building it.

    Args:
        source: The text.
        path: Names the file in errors.
        error: The exception class, called as `error(path, reason, line=...)`.

    Raises:
        error: not valid YAML, nested deeper than `MAX_DEPTH`, more than `MAX_VALUES` values
            once aliases are expanded (a "billion laughs"), or a tag outside YAML's core
            schema (`!!python/object`, `!!binary`, local `!tags`), with the line.
    """
    depth = 0
    values = 0  # as expanded: an alias counts the values of its anchor
    sizes: dict[str, int] = {}  # anchor -> values under it, once it is complete
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: anchor, values before
    try:
        for event in yaml.parse(source, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                values += sizes.get(event.anchor or "", 1)
            elif isinstance(event, yaml.ScalarEvent):
                values += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise error(path, f"nested deeper than {MAX_DEPTH} levels",
                                line=_line(event.start_mark))
                open_anchors.append((event.anchor, values))
                values += 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                anchor, before = open_anchors.pop()
                if anchor is not None:
                    sizes[anchor] = values - before
            if values > MAX_VALUES:
                raise error(path, f"expands to over {MAX_VALUES:,} values through its aliases "
                            "(*name); write the values out or share fewer",
                            line=_line(event.start_mark))
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in _ALLOWED_TAGS:
                shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
                raise error(path, f"YAML tag '{shown}' is not allowed (plain values only)",
                            line=_line(event.start_mark))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise error(path, f"not valid YAML: {exc.problem}", line=_line(mark)) from None
    except yaml.YAMLError as exc:
        raise error(path, f"not valid YAML: {exc}") from None


def compose_yaml(source: str, path: str, error: ErrorType = ConfigError) -> yaml.Node | None:
    """`check_yaml`, then PyYAML's node tree (None for an empty document).

    Raises:
        error: as `check_yaml`, or more than one document.
    """
    check_yaml(source, path, error)
    try:
        return yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise error(path, f"not valid YAML: {exc.problem}", line=_line(mark)) from None
    except yaml.YAMLError as exc:
        raise error(path, f"not valid YAML: {exc}") from None
