"""`qa rules check` rejects what would otherwise fail later, inside a running call: unknown
placeholders in the warning template, phrases that cannot match or match by accident, YAML
nested beyond reason, oversized files (issue 10, item 3). Errors name file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qa.cli import main
from qa.errors import RuleFileError
from qa.rules import load_pack
from qa.rules.schema import loads_pack

PACK = """\
language: {language}
handle_time:
  limit: 300
  warning_prompt: "{warning}"
steps:
  - id: greeting
    phrases: [thank you for calling, "{phrase}"]
    points: 60
    prompt: Greet the customer.
forbidden:
  - id: shirk
    phrases: [not my department]
    points: 40
    prompt: Do not shirk.
"""


def pack(phrase: str = "good morning", warning: str = "{{elapsed}} gone: {{action}}",
         language: str = "en") -> str:
    return PACK.replace("{language}", language).replace("{phrase}", phrase).replace(
        "{warning}", warning.replace("{{", "{").replace("}}", "}"))


def test_the_base_pack_loads() -> None:
    loaded = loads_pack(pack(), "p.yaml")
    assert loaded.handle_time.warning_prompt == "{elapsed} gone: {action}"
    assert loaded.steps[0].phrases[1] == "good morning"


@pytest.mark.parametrize(
    ("warning", "message"),
    [
        ("{foo} elapsed", r"unknown placeholder \{foo\}; allowed: \{action\}, \{elapsed\}"),
        ("{} elapsed", r"unknown placeholder \{\}"),
        ("{0} elapsed", r"unknown placeholder \{0\}"),
        ("{elapsed.real} elapsed", r"unknown placeholder \{elapsed.real\}"),
        ("{elapsed elapsed", "bad template .*expected '}'"),
        ("elapsed } here", "bad template .*Single '}'"),
        ("{elapsed!z}", "bad template"),
    ],
)
def test_warning_template_with_unknown_or_broken_placeholders(warning, message) -> None:
    with pytest.raises(RuleFileError, match=message) as info:
        loads_pack(pack(warning=warning), "p.yaml")
    assert (info.value.path, info.value.line, info.value.field) == (
        "p.yaml", 4, "handle_time.warning_prompt")


def test_literal_braces_are_fine() -> None:
    loaded = loads_pack(pack(warning="{{{{ref}}}} {elapsed}"), "p.yaml")
    assert loaded.handle_time.warning_prompt.format(elapsed="1", action="x") == "{ref} 1"


@pytest.mark.parametrize(
    ("phrase", "language", "message"),
    [
        ("...", "en", "only punctuation or symbols: it can never match"),
        ("?!", "en", "only punctuation"),
        ("no", "en", "one word of 2 letter"),
        ("Hi!", "en", "one word of 2 letter"),
        ("好", "zh", "a single Chinese character"),
        ("「好」", "zh", "a single Chinese character"),
        ("9", "en", "one word of 1 letter"),
    ],
)
def test_phrases_that_cannot_work(phrase, language, message) -> None:
    with pytest.raises(RuleFileError, match=message) as info:
        loads_pack(pack(phrase=phrase, language=language), "p.yaml")
    assert info.value.line == 7 and info.value.field == "steps[0].phrases[1]"


@pytest.mark.parametrize(("phrase", "language"), [
    ("yes", "en"), ("no way", "en"), ("好的", "zh"), ("您好", "zh"), ("ok ok", "en"),
])  # fmt: skip
def test_short_but_sound_phrases_are_kept(phrase, language) -> None:
    assert loads_pack(pack(phrase=phrase, language=language), "p.yaml").steps


def test_category_and_trigger_phrases_are_checked_too() -> None:
    text = pack() + "categories:\n  - id: urgent\n    phrases: [ah, '!!']\n"
    with pytest.raises(RuleFileError, match="one word of") as info:
        loads_pack(text, "p.yaml")
    assert info.value.field == "categories[0].phrases[0]" and info.value.line == 17


def test_deep_nesting_is_one_error_with_the_line() -> None:
    text = pack() + "description: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(RuleFileError, match="nested deeper than 32 levels") as info:
        loads_pack(text, "p.yaml")
    assert info.value.line == 15


def test_oversized_text_is_refused() -> None:
    with pytest.raises(RuleFileError, match="too large"):
        loads_pack(pack() + "#" * (1 << 20), "p.yaml")


def test_rules_check_names_file_line_and_field(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(pack(warning="{elapsed} gone, {minutes} left")))
    assert main(["rules", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qa: error: {path}:4: field 'handle_time.warning_prompt' unknown "
                          "placeholder {minutes}"), err
    with pytest.raises(RuleFileError):
        load_pack(path)
