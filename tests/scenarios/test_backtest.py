"""`qa backtest`: per-rule hits, steps done, precision and recall on the scenario calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qa.commands.backtest import load_labels, report, rule_stats
from qa.errors import ConfigError

from .calls import PACK, SCRIPTS

LABELS = SCRIPTS / "labels.yaml"


def qa(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_backtest_counts_hits_and_scores_against_labels(outcomes, pack):
    assert [o.file for o in outcomes] == ["clean.wav", "violations.wav", "long.wav"]
    rules = pack.rule_ids()
    labels = load_labels(LABELS, rules, [o.file for o in outcomes])
    stats = {s.rule: s for s in rule_stats(rules, outcomes, labels)}
    assert list(stats) == rules
    hits = {rule: s.hits for rule, s in stats.items() if s.hits}
    assert hits == {"greeting": 1, "apology": 1, "shirk": 1, "refuse": 1, "stall": 1,
                    "handle_time": 1, "dead_air": 1}
    assert {rule: s.done for rule, s in stats.items() if s.done} == {
        "greeting": 2, "identity_check": 3, "apology": 1, "resolution": 3, "closing": 3}
    for rule in hits:
        assert (stats[rule].precision, stats[rule].recall) == (1.0, 1.0), rule
    assert stats["closing"].precision is None and stats["closing"].recall is None
    doc = report(outcomes, list(stats.values()))
    assert [c["total"] for c in doc["calls"]] == [100, 35, 85]


def test_rule_stats_precision_and_recall_count_misses_and_false_alarms(outcomes, pack):
    # Labels that disagree with the calls: stall expected on clean (a miss), dead_air not
    # expected on long (a false alarm).
    labels = {"clean.wav": frozenset({"stall"}),
              "violations.wav": frozenset({"stall"}), "long.wav": frozenset()}
    stats = {s.rule: s for s in rule_stats(pack.rule_ids(), outcomes, labels)}
    assert (stats["stall"].precision, stats["stall"].recall) == (1.0, 0.5)
    assert (stats["dead_air"].precision, stats["dead_air"].recall) == (0.0, None)


def test_qa_backtest_cli_prints_json(calls, repo, tmp_path):
    # The long call alone keeps this cheap (six turns); the folder holds only it.
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "long.wav").symlink_to(calls["long"].path)
    labels = tmp_path / "labels.yaml"
    labels.write_text("long.wav: [handle_time, dead_air]\n")
    done = qa("backtest", str(folder), "--rules", str(PACK), "--labels", str(labels), "--json",
              cwd=repo)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert [(c["file"], c["hits"]) for c in doc["calls"]] == [
        ("long.wav", ["dead_air", "handle_time"])]
    rules = {r["rule"]: r for r in doc["rules"]}
    assert rules["handle_time"] | {"rule": "x"} == {
        "rule": "x", "hits": 1, "done": 0, "intent": 0, "expected": 1, "true_positives": 1,
        "precision": 1.0, "recall": 1.0}
    assert rules["closing"]["done"] == 1


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "missing: no such folder"),
    ("empty", "empty: no *.wav files in the folder"),
    ("bad_rule", "labels.yaml:3: field 'a.wav[1]' unknown rule 'greting'"),
    ("bad_file", "labels.yaml:1: field 'b.wav' no such file in the folder"),
    ("not_a_list", "labels.yaml:1: field 'a.wav' expected a list of rule ids"),
    ("bad_yaml", "labels.yaml:2: not valid YAML"),
])
def test_qa_backtest_cli_reports_bad_input(setup, message, tmp_path, repo):
    folder = tmp_path / setup
    if setup != "missing":
        folder.mkdir()
    if setup != "empty" and setup != "missing":
        (folder / "a.wav").write_bytes(b"")
    labels = tmp_path / "labels.yaml"
    labels.write_text({
        "bad_rule": "a.wav:\n  [shirk,\n   greting]\n",
        "bad_file": "b.wav: []\n",
        "not_a_list": "a.wav: shirk\n",
        "bad_yaml": "a.wav: [shirk\nb.wav: ]\n",
    }.get(setup, "a.wav: []\n"))
    done = qa("backtest", str(folder), "--rules", str(PACK), "--labels", str(labels), cwd=repo)
    assert done.returncode == 2
    assert done.stderr.startswith("qa: error: ")
    assert message in done.stderr, done.stderr


def test_load_labels_errors_carry_file_line_and_field(tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text("a.wav: []\nb.wav: [dead_air, nope]\n")
    with pytest.raises(ConfigError) as info:
        load_labels(labels, ["dead_air"])
    assert (info.value.path, info.value.line, info.value.field) == (str(labels), 2, "b.wav[1]")
