"""Checks on the shipped behaviour libraries (`qa/rules/library/{en,zh}.jsonl`).

The library is training data for the intent classifier: positives per behaviour, and the
`neutral` lines as negatives for every behaviour. These tests check what can be checked
mechanically: the fields, that every behaviour is a rule of the language's example pack said by
the right speaker, enough lines per behaviour, no duplicates, and no line copied from the
held-out test half of the labelled evaluation data.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ("en", "zh")

MIN_PER_BEHAVIOUR = 40
MIN_NEUTRAL = 250
# Neutral lines are negatives for agent and customer rules alike, so both sides need plenty.
MIN_NEUTRAL_PER_SPEAKER = 100
FIELDS = {"text", "speaker", "behaviour"}


def _norm(text: str) -> str:
    """Lower case without punctuation or spaces: "Mm-hm." and "mm hm" are the same line."""
    return re.sub(r"[\W_]+", "", text.lower())


def _library(language: str) -> Path:
    return ROOT / "qa" / "rules" / "library" / f"{language}.jsonl"


def _held_out(language: str) -> Path:
    # The held-out half: the library must never contain its utterances (see its README).
    return ROOT / "tests" / "data" / "intents" / language / "test.jsonl"


def _pack_speakers(language: str) -> dict[str, str]:
    """Rule id -> speaker, for the steps, forbidden rules and categories of the pack."""
    path = ROOT / "examples" / "rules" / f"{language}_support.yaml"
    pack = yaml.safe_load(path.read_text(encoding="utf-8"))
    speakers = {rule["id"]: rule["speaker"] for rule in pack["steps"] + pack["forbidden"]}
    # Categories are what the customer says (docs/design.md, "The domain").
    speakers.update({cat["id"]: "customer" for cat in pack["categories"]})
    return speakers


@pytest.fixture(scope="module", params=LANGUAGES)
def language(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def rows(language: str) -> list[dict]:
    out = []
    path = _library(language)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            assert line.strip(), f"{path.name}:{lineno}: blank line"
            row = json.loads(line)
            assert isinstance(row, dict), f"{path.name}:{lineno}: not an object"
            out.append({**row, "_line": lineno, "_file": path.name})
    return out


def test_fields_and_types(rows):
    for row in rows:
        where = f"{row['_file']}:{row['_line']}"
        extra = {"_line", "_file"}
        assert set(row) - extra == FIELDS, f"{where}: fields {sorted(set(row) - extra)}"
        assert isinstance(row["text"], str), f"{where}: text"
        assert row["text"] == row["text"].strip() and row["text"], f"{where}: text empty/padded"
        assert row["speaker"] in ("agent", "customer"), f"{where}: speaker {row['speaker']!r}"


def test_behaviours_are_pack_rules_said_by_their_speaker(rows, language):
    speakers = _pack_speakers(language)
    for row in rows:
        where = f"{row['_file']}:{row['_line']}"
        behaviour = row["behaviour"]
        if behaviour == "neutral":
            continue
        assert behaviour in speakers, f"{where}: unknown behaviour {behaviour!r}"
        assert row["speaker"] == speakers[behaviour], (
            f"{where}: {behaviour} is said by the {speakers[behaviour]}, not the {row['speaker']}"
        )


def test_enough_lines_per_behaviour(rows, language):
    counts = Counter(row["behaviour"] for row in rows)
    for rule_id in _pack_speakers(language):
        assert counts[rule_id] >= MIN_PER_BEHAVIOUR, f"{rule_id}: {counts[rule_id]} lines"
    assert counts["neutral"] >= MIN_NEUTRAL, f"neutral: {counts['neutral']} lines"
    neutral_by_speaker = Counter(row["speaker"] for row in rows if row["behaviour"] == "neutral")
    for speaker in ("agent", "customer"):
        assert neutral_by_speaker[speaker] >= MIN_NEUTRAL_PER_SPEAKER, (
            f"neutral {speaker}: {neutral_by_speaker[speaker]} lines"
        )


def test_no_duplicates(rows):
    seen: dict[str, int] = {}
    for row in rows:
        key = _norm(row["text"])
        assert key, f"{row['_file']}:{row['_line']}: no words"
        assert key not in seen, (
            f"{row['_file']}:{row['_line']}: duplicates line {seen[key]}: {row['text']!r}"
        )
        seen[key] = row["_line"]


def test_no_held_out_utterance(rows, language):
    held_out_path = _held_out(language)
    assert held_out_path.exists(), held_out_path
    with held_out_path.open(encoding="utf-8") as f:
        held_out = {_norm(json.loads(line)["text"]) for line in f if line.strip()}
    for row in rows:
        # Only the library's own line is named, never the held-out one.
        assert _norm(row["text"]) not in held_out, (
            f"{row['_file']}:{row['_line']}: also in the held-out test half"
        )


def test_chinese_lines_are_mandarin(rows, language):
    # A stray English or empty-of-Han line would teach the classifier nothing about Mandarin.
    if language != "zh":
        pytest.skip("English library")
    for row in rows:
        assert re.search(r"[\u4e00-\u9fff]", row["text"]), (
            f"{row['_file']}:{row['_line']}: no Chinese characters: {row['text']!r}"
        )
