"""Rule pack loading: the example packs, every kind of bad file, and the JSON Schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from qa.cli import main
from qa.errors import RuleFileError
from qa.rules import load_pack
from qa.rules.schema import ALLOWED_KEYS, DEFAULT_CATEGORIES

GOOD = """\
language: en
steps:
  - id: greeting
    phrases: [thank you for calling]
    deadline: {within: 15}
    points: 40
    prompt: Greet the customer.
  - id: apology
    phrases: [I'm sorry]
    trigger: complaint
    deadline: {within: 20}
    points: 30
    prompt: Apologise.
forbidden:
  - id: shirk
    phrases: [not my department]
    points: 30
    prompt: Do not shirk.
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_minimal_pack_loads_with_defaults(tmp_path):
    pack = load_pack(_write(tmp_path, GOOD))
    assert pack.name == "pack" and pack.language == "en"
    apology = pack.step("apology")
    assert (apology.deadline.within, apology.deadline.origin) == (20.0, "trigger")
    assert pack.step("greeting").speaker == "agent"
    assert (pack.handle_time.limit, pack.handle_time.warnings) == (300.0, (240.0,))
    assert "specialist line" in pack.handle_time.action
    assert [c.id for c in pack.categories] == ["consultation", "complaint", "suggestion", "urgent"]
    assert pack.categories == DEFAULT_CATEGORIES["en"]


def test_example_packs_express_the_centre_standard(en_pack, zh_pack):
    for pack in (en_pack, zh_pack):
        assert {s.id for s in pack.steps} >= {"greeting", "identity_check", "apology", "closing"}
        assert {f.id for f in pack.forbidden} == {"shirk", "refuse", "stall"}
        assert (pack.handle_time.limit, pack.handle_time.warnings) == (300.0, (240.0,))
        assert [c.id for c in pack.categories] == [
            "consultation",
            "complaint",
            "suggestion",
            "urgent",
        ]
        assert pack.step("apology").trigger == "complaint"
        assert pack.step("closing").deadline.within is None
    zh_forbidden = {p for f in zh_pack.forbidden for p in f.phrases}
    assert {"不归我管", "我不知道", "你自己看着办", "这不是我的问题"} <= zh_forbidden
    assert "专家热线" in zh_pack.handle_time.action
    assert "that's not my department" in en_pack.forbidden[0].phrases


BAD_CASES = [
    # (name, yaml text, line, field, words in the reason)
    ("bad yaml", "language: en\nsteps:\n  - id: a\n   phrases: [x]\n", 4, None, "not valid YAML"),
    ("bad yaml flow", "language: en\nsteps: [\n", 3, None, "not valid YAML"),
    (
        "unknown key",
        GOOD.replace("    deadline: {within: 15}", "    dedline: {within: 15}"),
        5,
        "steps[0].dedline",
        "unknown key 'dedline'; allowed: after, behaviour, counter_examples, deadline",
    ),
    ("unknown top key", "language: en\nrules: []\n", 2, "rules", "unknown key"),
    (
        "missing field",
        GOOD.replace("    prompt: Greet the customer.\n", ""),
        3,
        "steps[0].prompt",
        "missing required field",
    ),
    (
        "missing language",
        GOOD.replace("language: en\n", ""),
        1,
        "language",
        "missing required field",
    ),
    (
        "empty phrases",
        GOOD.replace("[thank you for calling]", "[]"),
        4,
        "steps[0].phrases",
        "at least one phrase",
    ),
    (
        "empty phrase",
        GOOD.replace("[not my department]", "['  ']"),
        16,
        "forbidden[0].phrases[0]",
        "must not be empty",
    ),
    (
        "wrong type points",
        GOOD.replace("points: 40", "points: forty"),
        6,
        "steps[0].points",
        "must be number",
    ),
    (
        "wrong type phrases",
        GOOD.replace("[thank you for calling]", "thank you"),
        4,
        "steps[0].phrases",
        "must be a list of phrases",
    ),
    ("wrong type steps", "language: en\nsteps: {id: a}\n", 2, "steps", "must be a list"),
    (
        "bad language",
        GOOD.replace("language: en", "language: fr"),
        1,
        "language",
        "must be one of en, zh, auto",
    ),
    (
        "bad speaker",
        GOOD.replace(
            "    points: 30\n    prompt: Do not",
            "    speaker: boss\n    points: 30\n    prompt: Do not",
        ),
        17,
        "forbidden[0].speaker",
        "must be one of",
    ),
    (
        "duplicate id",
        GOOD.replace("id: apology", "id: greeting"),
        8,
        "steps[1].id",
        "duplicate rule id 'greeting'",
    ),
    (
        "bad deadline reference",
        GOOD.replace("{within: 15}", "{within: 15, from: hello}"),
        3,
        "steps[0].deadline.from",
        "bad deadline reference 'hello'",
    ),
    (
        "unknown trigger",
        GOOD.replace("trigger: complaint", "trigger: complain"),
        8,
        "steps[1].trigger",
        "unknown trigger 'complain'",
    ),
    (
        "unknown order step",
        GOOD.replace("    trigger: complaint\n", "    trigger: complaint\n    after: [identity]\n"),
        8,
        "steps[1].after",
        "unknown step 'identity'",
    ),
    ("points not 100", GOOD.replace("points: 40", "points: 45"), 1, "points", "add up to 105"),
    (
        "warnings past limit",
        GOOD + "handle_time: {limit: 200, warnings: [240]}\n",
        19,
        "handle_time.warnings",
        "below the limit",
    ),
    (
        "deadline from trigger without trigger",
        GOOD.replace("{within: 15}", "{within: 15, from: trigger}"),
        3,
        "steps[0].deadline.from",
        "the step has no trigger",
    ),
    (
        "deadline neither end nor mapping",
        GOOD.replace("{within: 15}", "soon"),
        5,
        "steps[0].deadline",
        "must be 'end' or a mapping",
    ),
    ("empty file", "", None, None, "empty rule file"),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_rule_files_name_file_line_and_field(tmp_path, text, line, field, reason):
    path = _write(tmp_path, text) if text else tmp_path / "pack.yaml"
    if not text:
        path.write_text("", encoding="utf-8")
    with pytest.raises(RuleFileError) as err:
        load_pack(path)
    exc = err.value
    assert exc.path == str(path)
    assert (exc.line, exc.field) == (line, field)
    assert reason in str(exc)
    assert str(exc).startswith(f"{path}:{line}:" if line else f"{path}:")


def test_missing_file_is_a_rule_file_error(tmp_path):
    with pytest.raises(RuleFileError, match="cannot read"):
        load_pack(tmp_path / "nope.yaml")


@pytest.fixture(scope="module")
def json_schema(repo: Path) -> dict:
    return json.loads((repo / "docs" / "rules.schema.json").read_text(encoding="utf-8"))


def test_example_packs_validate_against_the_json_schema(repo, json_schema):
    jsonschema.Draft202012Validator.check_schema(json_schema)
    for name in ("en_support.yaml", "zh_support.yaml"):
        data = yaml.safe_load((repo / "examples" / "rules" / name).read_text(encoding="utf-8"))
        jsonschema.validate(data, json_schema)


def test_json_schema_rejects_what_the_loader_rejects(json_schema):
    data = yaml.safe_load(GOOD)
    jsonschema.validate(data, json_schema)
    data["steps"][0]["dedline"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema)
    data = yaml.safe_load(GOOD)
    data["steps"][0]["phrases"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema)


def test_json_schema_property_names_equal_the_loader_keys(json_schema):
    defs = json_schema["$defs"]
    props = json_schema["properties"]
    cond = props["conditions"]["properties"]
    deadline = next(o for o in defs["step"]["properties"]["deadline"]["oneOf"] if "properties" in o)
    schema_keys = {
        "pack": props,
        "matching": props["matching"]["properties"],
        "intents": props["intents"]["properties"],
        "step": defs["step"]["properties"],
        "deadline": deadline["properties"],
        "forbidden": defs["forbidden"]["properties"],
        "handle_time": props["handle_time"]["properties"],
        "conditions": cond,
        "dead_air": defs["threshold"]["properties"],
        "talk_over": defs["threshold"]["properties"],
        "talk_share": cond["talk_share"]["properties"],
        "category": defs["category"]["properties"],
        "trigger": defs["trigger"]["properties"],
    }
    assert {k: set(v) for k, v in schema_keys.items()} == {
        k: set(v) for k, v in ALLOWED_KEYS.items()
    }


def test_cli_check_reports_ok_and_errors(repo, tmp_path, capsys):
    bad = _write(tmp_path, GOOD.replace("[thank you for calling]", "[]"))
    good = repo / "examples" / "rules" / "zh_support.yaml"
    assert main(["rules", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}: ok (5 steps, 10 forbidden phrases, 4 categories")
    assert main(["rules", "check", str(bad), str(good)]) == 2
    captured = capsys.readouterr()
    assert f"qa: error: {bad}:4: field 'steps[0].phrases'" in captured.err
    assert f"{good}: ok" in captured.out


def test_cli_match_shows_the_hits(repo, capsys):
    pack = repo / "examples" / "rules" / "zh_support.yaml"
    assert main(["rules", "match", str(pack), "你好，這不是我的問題", "--phrases-only"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "greeting\tpinyin\t0.75\t您好\t你好",
        "shirk\texact\t1.00\t这不是我的问题\t這不是我的問題",
    ]
