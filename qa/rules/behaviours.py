"""The built-in behaviour library: examples of the standard call-centre behaviours.

`qa/rules/library/<language>.jsonl` holds, one JSON object a line, utterances of the
behaviours that call-centre standards write down (greeting, identity_check, apology,
resolution / record_ticket, closing, shirk, refuse, stall; the customer's consultation,
complaint, suggestion, urgent) and `neutral` call talk that is none of them, hard near misses
included. A rule that names a `behaviour` learns from its examples as well as its own; every
rule learns from the neutral talk what does not count. The library never holds the held-out
test utterances of `tests/data/intents/`.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

from qa.errors import ConfigError
from qa.rules.intents import Library

log = logging.getLogger("qa.rules.behaviours")

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
#: Library languages; a pack in `auto` gets all of them.
LANGUAGES = ("en", "zh")


@functools.cache
def _load(language: str) -> Library:
    path = LIBRARY_DIR / f"{language}.jsonl"
    behaviours: dict[str, list[str]] = {}
    neutral: list[str] = []
    if not path.is_file():
        log.warning("no behaviour library for %s at %s", language, path)
        return Library({}, ())
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, name = row["text"].strip(), row["behaviour"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(str(path), f"bad library line: {exc}", line=number) from exc
        if name == "neutral":
            neutral.append(text)
        else:
            behaviours.setdefault(name, []).append(text)
    return Library({k: tuple(v) for k, v in behaviours.items()}, tuple(neutral))


def library(language: str) -> Library:
    """The library for a pack's language (`en`, `zh`, or `auto` for all of them)."""
    languages = LANGUAGES if language == "auto" else (language,)
    parts = [_load(lang) for lang in languages if lang in LANGUAGES]
    behaviours: dict[str, tuple[str, ...]] = {}
    for part in parts:
        for name, texts in part.behaviours.items():
            behaviours[name] = behaviours.get(name, ()) + texts
    return Library(behaviours, tuple(t for part in parts for t in part.neutral))


def behaviour_names(language: str) -> frozenset[str]:
    """Names a rule may give as its `behaviour` in a pack of this language."""
    return frozenset(library(language).behaviours)
