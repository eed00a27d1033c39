"""`qa review ...` through the installed command, in a subprocess, on a real store: an SQLite
file and a PostgreSQL server (`--db postgresql://...`)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from qa.store import CallStore, StoreOptions
from tests.pgserver import PASSWORD

from .conftest import CALL_ID, fill


@pytest.fixture
def review(repo: Path, db: Path | str):
    with CallStore(StoreOptions(path=db)) as store:
        fill(store)
    # PYTHONPATH makes the command import this checkout whatever the editable install maps.
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("QA_DB", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(repo / ".venv" / "bin" / "qa"), "review", *args, "--db", str(db)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert PASSWORD not in done.stdout + done.stderr  # a URL's password is never shown
        return done

    return run


def test_list_show_override_export(review, tmp_path: Path) -> None:
    listed = review("list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["CALL", "STARTED", "(UTC)", "AGENT", "DURATION", "CATEGORY",
                              "SCORE", "BAND", "EVENTS"]  # fmt: skip
    assert row.split() == [CALL_ID, "2024-05-06", "07:08:09Z", "agent-7", "0:20.0",
                           "complaint", "85", "80-85", "3"]  # fmt: skip

    shown = review("show", CALL_ID)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "   0:00.5  agent     Hello, thank you for calling, how can I help?  #1" in lines
    assert "   0:09.0  customer  我不知道怎么办  #4" in lines
    assert any("forbidden_phrase  no_shirking  critical  -10" in line for line in lines)
    assert "Scorecard: 85 (band 80-85)" in lines

    for points, reviewer in (("15", "ann"), ("20", "bob")):
        done = review("override", CALL_ID, "no_shirking", "--points", points,
                      "--reviewer", reviewer, "--reason", "quoted, not said")  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"{CALL_ID} no_shirking: 15 -> 20 by bob; score now 95 (band 90-95)"
    )
    shown = review("show", CALL_ID).stdout
    assert "Scorecard: 95 (band 90-95); automatic 85 (band 80-85)" in shown
    assert "no_shirking  10 -> 15  by ann: quoted, not said" in shown
    assert "no_shirking  15 -> 20  by bob: quoted, not said" in shown

    exported = review("export", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    (row,) = csv.DictReader(io.StringIO(exported.stdout))
    assert row["call_id"] == CALL_ID
    assert (float(row["automatic_total"]), float(row["total"]), row["band"]) == (85, 95, "90-95")
    assert int(row["overrides"]) == 2

    out = tmp_path / "export.json"
    assert review("export", "--format", "json", "--output", str(out)).returncode == 0
    (call,) = json.loads(out.read_text(encoding="utf-8"))
    assert (call["total"], call["automatic_total"], call["band"]) == (95, 85, "90-95")
    items = {i["rule_id"]: (i["automatic"], i["points"]) for i in call["items"]}
    assert items == {"greeting": (10, 10), "no_shirking": (10, 20), "verify_identity": (65, 65)}


def test_show_writes_the_html_report(review, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = review("show", CALL_ID, "--html", str(out))
    assert done.returncode == 0, done.stderr
    titles: list[str] = []

    class Title(HTMLParser):
        def handle_data(self, data: str) -> None:
            if self.get_starttag_text() == "<title>":
                titles.append(data)

    Title().feed(out.read_text(encoding="utf-8"))
    assert titles == [f"Call {CALL_ID}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nope"), "qa: error: no call 'nope' in the call store"),
        (("override", "nope", "x", "--points", "1", "--reviewer", "a", "--reason", "b"),
         "qa: error: no call 'nope' in the call store"),
        (("override", CALL_ID, "greeting", "--points", "11", "--reviewer", "a", "--reason", "b"),
         "qa: error: points for 'greeting' must be between 0 and 10, got 11"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_status_2(review, args: tuple[str, ...], message: str) -> None:
    done = review(*args)
    assert done.returncode == 2
    assert done.stderr == message + "\n"
    assert done.stdout == ""


def test_missing_database_is_not_created(repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none" / "calls.db"
    done = subprocess.run(
        [str(repo / ".venv" / "bin" / "qa"), "review", "list", "--db", str(missing)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"qa: error: {missing}: no call store here")
    assert not missing.parent.exists()
