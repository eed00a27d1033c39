"""`qa run --config`: settings from YAML, and bad files named by file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qa.config import RunConfig, load_config
from qa.errors import ConfigError

GOOD = """\
sources:
  - file:examples/sample_call.wav
  - rtp://127.0.0.1:40000,40002
agent: a-017
language: en
workers: 2
rules: examples/rules/en_support.yaml
metrics_port: 9464
tokens:
  a-017: s3cret
"""


def test_a_full_config_is_read(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config == RunConfig(
        sources=("file:examples/sample_call.wav", "rtp://127.0.0.1:40000,40002"),
        agent="a-017", language="en", workers=2, rules="examples/rules/en_support.yaml",
        metrics_port=9464, tokens=(("a-017", "s3cret"),),
    )


def test_port_zero_is_any_free_port_and_null_is_off(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("metrics_port: 0\nprompts_port: null\n")
    config = load_config(path)
    assert (config.metrics_port, config.prompts_port) == (0, None)
    assert RunConfig().metrics_port is None and RunConfig().prompts_port is None


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"),
    [
        ("sources: [a\nagent: x\n", 2, None, "not valid YAML"),
        ("agent: x\nspeed: 3\n", 2, "speed", "unknown setting"),
        ("workers: two\n", 1, "workers", "expected int"),
        ("workers: 0\n", 1, "workers", "at least 1"),
        ("json: 1\n", 1, "json", "expected bool"),
        ("language: fr\n", 1, "language", "expected en, zh or auto"),
        ("sources:\n  - 5\n", 1, "sources[0]", "expected a source string"),
        ("metrics_port: 70000\n", 1, "metrics_port", "expected a TCP port"),
        ("metrics_port: '80'\n", 1, "metrics_port", "expected int"),
        ("tokens:\n  a-1: ''\n", 1, "tokens.a-1", "non-empty token"),
        ("- a\n- b\n", 1, None, "expected a mapping"),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path, text, line, field, reason):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), line, field)
    assert reason in str(error)


def test_qa_run_reports_a_bad_config_in_one_line(tmp_path: Path, repo: Path):
    path = tmp_path / "run.yaml"
    path.write_text("sources: [file:x.wav]\nworkers: many\n")
    done = subprocess.run([sys.executable, "-m", "qa", "run", "--config", str(path)],
                          cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"qa: error: {path}:2: field 'workers' expected int, got str"
    ]


def test_qa_run_reports_a_bad_source_in_one_line(repo: Path):
    done = subprocess.run([sys.executable, "-m", "qa", "run", "--source", "tcp://x:1"],
                          cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("qa: error: tcp://x:1: field 'source' unknown source")


def test_the_overload_policy_is_set_from_the_config(tmp_path: Path):
    """Refusal and shedding thresholds come from the run settings; `shed_after_s: 0` never
    sheds; a file replayed as fast as possible never applies the policy at all."""
    from qa.commands.run import _overload

    path = tmp_path / "run.yaml"
    path.write_text("refuse_after_s: 12\nshed_after_s: 30\n")
    config = load_config(path)
    assert (config.refuse_after_s, config.shed_after_s) == (12.0, 30.0)
    live = _overload(config, live=True)
    assert live.enabled and live.refuse_after_s == 12.0 and live.shed_after_s == 30.0
    assert not _overload(config, live=False).enabled

    path.write_text("shed_after_s: 0\noverload: true\n")
    never = _overload(load_config(path), live=True)
    assert never.enabled and never.shed_after_s == float("inf")
    path.write_text("overload: false\n")
    assert not _overload(load_config(path), live=True).enabled


@pytest.mark.parametrize("text, field, reason", [
    ("shed_after_s: fast\n", "shed_after_s", "expected number"),
    ("refuse_after_s: 0\n", "refuse_after_s", "more than 0"),
    ("refuse_after_s: 10\nshed_after_s: 5\n", "shed_after_s", "at least refuse_after_s"),
    ("overload: 1\n", "overload", "expected bool"),
])
def test_bad_overload_settings_name_the_field(tmp_path: Path, text, field, reason):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == field and reason in str(caught.value), str(caught.value)
