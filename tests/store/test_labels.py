"""Reviewers teach the rules: `qa review label`, overrides that take back a matched hit, and
`qa rules tune --db` folding both into the pack (issue: rules by meaning, item 5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qa.cli import main
from qa.errors import StoreError
from qa.rules import load_pack
from qa.store import CallStore, StoreOptions
from qa.types import CallInfo, Event, EventKind, Scorecard, ScoreItem, Segment, Severity, Speaker

REPO = Path(__file__).resolve().parents[2]
CALL = "file-labels-1"


def _store(path: Path | str) -> None:
    with CallStore(StoreOptions(path=path)) as store:
        store.start_call(CallInfo(CALL, "a-1", "file:x.wav", 1.7e9,
                                  (Speaker.AGENT, Speaker.CUSTOMER), 16000))
        for seg in (
            Segment(CALL, Speaker.AGENT, 0.5, 3.0, "Hi, Acme billing, Jo here, what's up?"),
            Segment(CALL, Speaker.CUSTOMER, 3.5, 6.0, "My bill doubled this month."),
            Segment(CALL, Speaker.AGENT, 6.5, 9.0,
                    "Dunno if you got our letter, it explains the new tariff."),
        ):
            store.add_segment(seg)
        store.add_event(Event(CALL, 6.5, EventKind.FORBIDDEN_PHRASE, "refuse", Severity.CRITICAL,
                              -10.0, "Dunno if you got our letter", "Do not refuse",
                              Speaker.AGENT, 9.0, match="intent", score=0.41,
                              example="No idea, honestly."))
        store.end_call(CALL, duration=10.0, category=None, reason="end of file")
        store.save_scorecard(Scorecard(CALL, (
            ScoreItem("refuse", "Refusing to help", 10.0, 0.0, ("Dunno if you got our letter",),
                      (6.5,)),
        ), 90.0, "85-90"))


def test_labels_and_overrides_become_examples_in_the_pack(tmp_path, capsys, db):
    _store(db)
    pack = tmp_path / "en_support.yaml"
    shutil.copy(REPO / "examples" / "rules" / "en_support.yaml", pack)

    assert main(["review", "label", CALL, "#1", "greeting", "yes", "--db", str(db),
                 "--reviewer", "ann", "--reason", "a greeting in other words"]) == 0
    assert "#1 greeting: yes by ann" in capsys.readouterr().out
    # Taking back the false alarm labels its segment "no" for the rule, with who and why.
    assert main(["review", "override", CALL, "refuse", "--points", "10", "--db", str(db),
                 "--reviewer", "bob", "--reason", "asking about a letter"]) == 0
    assert "labelled segment #3" in capsys.readouterr().out
    with CallStore(StoreOptions(path=db)) as store:
        labels = store.labels()
        with pytest.raises(StoreError, match="segments 1 to 3"):
            store.add_label(CALL, 9, "greeting", "yes", reviewer="x", reason="y")
    assert [(x.segment, x.rule_id, x.verdict, x.reviewer) for x in labels] == [
        (1, "greeting", "yes", "ann"), (3, "refuse", "no", "bob")]

    before = pack.read_text(encoding="utf-8")
    assert main(["rules", "tune", str(pack), "--db", str(db)]) == 0  # dry run: nothing written
    assert pack.read_text(encoding="utf-8") == before
    assert main(["rules", "tune", str(pack), "--db", str(db), "--write"]) == 0
    after = pack.read_text(encoding="utf-8")
    tuned = load_pack(pack)
    refuse = next(r for r in tuned.forbidden if r.id == "refuse")
    assert "Dunno if you got our letter, it explains the new tariff." in refuse.counter_examples
    assert "Hi, Acme billing, Jo here, what's up?" in tuned.step("greeting").examples
    assert f"review {CALL} #3 by bob: override: asking about a letter" in after
    assert after.startswith(before.splitlines()[0])  # the pack's own comments are kept
    # Folding again adds nothing twice.
    assert main(["rules", "tune", str(pack), "--db", str(db), "--write"]) == 0
    assert pack.read_text(encoding="utf-8") == after
