"""The labelled intent data (tests/data/intents) and the example packs' examples agree.

No model runs here: these checks keep the evaluation data honest (schema, size, coverage of
every rule, share of near misses, tune and test halves that never mix) so that precision and
recall measured on the test half mean something. The packs are read with plain YAML on
purpose, so this file does not depend on the pack loader it helps to evaluate.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "tests" / "data" / "intents"
PACKS = REPO / "examples" / "rules"
LANGS = ("en", "zh")
#: dev.jsonl was written later and apart, to check that choices made on tune generalise.
HALVES = ("tune", "test", "dev")
FIELDS = {"id", "text", "speaker", "labels", "kind"}
KINDS = {"paraphrase", "formal", "casual", "rude", "asr", "multi", "hard_negative", "neutral"}
#: Floors the data was written to (issue 9 asks for 400 per language; we keep 250 per half;
#: the later dev sets hold 249-252).
MIN_LINES = {"tune": 250, "test": 250, "dev": 240}
MIN_POSITIVES = 15
MIN_EMPTY_SHARE = 0.30
MIN_ASR_SHARE = 0.10


def norm(text: str) -> str:
    """Lowercased letters and digits only: "Sorry, bye!" and "sorry bye" are the same line."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())


def load_rows(lang: str, half: str) -> list[tuple[int, dict]]:
    path = DATA / lang / f"{half}.jsonl"
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path}:{n}: not JSON ({exc})")
    return rows


def load_pack(lang: str) -> dict:
    return yaml.safe_load((PACKS / f"{lang}_support.yaml").read_text(encoding="utf-8"))


def rules_by_speaker(pack: dict) -> dict[str, set[str]]:
    """Steps and forbidden rules are the agent's; categories describe what the customer says."""
    agent = {r["id"] for r in pack["steps"] + pack["forbidden"] if r.get("speaker") == "agent"}
    return {"agent": agent, "customer": {c["id"] for c in pack["categories"]}}


def pack_rules(pack: dict) -> list[dict]:
    return pack["steps"] + pack["forbidden"] + pack["categories"]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("half", HALVES)
def test_schema(lang: str, half: str) -> None:
    allowed = rules_by_speaker(load_pack(lang))
    ids = set()
    where = f"{DATA / lang / half}.jsonl"
    for n, row in load_rows(lang, half):
        at = f"{where}:{n}"
        assert set(row) == FIELDS, f"{at}: fields {sorted(row)}"
        assert re.fullmatch(rf"{lang}-{half}-\d{{4}}", row["id"]), f"{at}: id {row['id']!r}"
        assert row["id"] not in ids, f"{at}: id {row['id']} repeated"
        ids.add(row["id"])
        assert isinstance(row["text"], str) and row["text"].strip(), f"{at}: empty text"
        assert row["speaker"] in allowed, f"{at}: speaker {row['speaker']!r}"
        labels = row["labels"]
        assert isinstance(labels, list) and len(set(labels)) == len(labels), f"{at}: labels"
        wrong = set(labels) - allowed[row["speaker"]]
        assert not wrong, f"{at}: {sorted(wrong)} are not {lang} rules a {row['speaker']} can fire"
        assert row["kind"] in KINDS, f"{at}: kind {row['kind']!r}"
        if row["kind"] in ("hard_negative", "neutral"):
            assert labels == [], f"{at}: a {row['kind']} line fires nothing"
        if row["kind"] == "multi":
            assert len(labels) >= 2, f"{at}: a multi line holds several acts"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("half", HALVES)
def test_size_coverage_and_mix(lang: str, half: str) -> None:
    rows = [row for _, row in load_rows(lang, half)]
    assert len(rows) >= MIN_LINES[half]
    positives = Counter(label for row in rows for label in row["labels"])
    every_rule = set().union(*rules_by_speaker(load_pack(lang)).values())
    thin = {rule: positives[rule] for rule in every_rule if positives[rule] < MIN_POSITIVES}
    assert not thin, f"{lang} {half}: rules with under {MIN_POSITIVES} positives: {thin}"
    empty = sum(not row["labels"] for row in rows) / len(rows)
    assert empty >= MIN_EMPTY_SHARE, f"{lang} {half}: only {empty:.0%} of lines fire nothing"
    asr = sum(row["kind"] == "asr" for row in rows) / len(rows)
    assert asr >= MIN_ASR_SHARE, f"{lang} {half}: only {asr:.0%} ASR-style lines"
    assert {"rude", "formal", "hard_negative", "multi"} <= {row["kind"] for row in rows}


@pytest.mark.parametrize("lang", LANGS)
def test_the_halves_never_share_a_line(lang: str) -> None:
    seen: dict[str, str] = {}
    for half in HALVES:
        for n, row in load_rows(lang, half):
            key = norm(row["text"])
            assert key not in seen, f"{lang}/{half}.jsonl:{n} repeats {seen.get(key)}"
            seen[key] = f"{lang}/{half}.jsonl:{n}"


@pytest.mark.parametrize("lang", LANGS)
def test_pack_examples_stay_out_of_the_test_half(lang: str) -> None:
    test_lines = {norm(row["text"]): n for n, row in load_rows(lang, "test")}
    for rule in pack_rules(load_pack(lang)):
        for key in ("examples", "counter_examples"):
            for text in rule.get(key, []):
                n = test_lines.get(norm(text))
                assert n is None, f"{rule['id']}.{key} {text!r} is test.jsonl:{n}"


@pytest.mark.parametrize("lang", LANGS)
def test_every_pack_rule_has_examples_and_counter_examples(lang: str) -> None:
    for rule in pack_rules(load_pack(lang)):
        examples, counter = rule.get("examples", []), rule.get("counter_examples", [])
        assert len(examples) >= 5, f"{lang} {rule['id']}: {len(examples)} examples"
        assert len(counter) >= 3, f"{lang} {rule['id']}: {len(counter)} counter-examples"
        both = {norm(t) for t in examples} & {norm(t) for t in counter}
        assert not both, f"{lang} {rule['id']}: both an example and a counter-example: {both}"
