"""Issue 5, end to end: the running service, a real Prometheus scraping it every second, and
every PromQL expression of every committed Grafana dashboard run through Prometheus's HTTP API.

`qa run` replays the three scripted calls (clean, violations, past five minutes) as fast as it
can, and also listens on an RTP port that never receives a packet and records a PulseAudio
null sink's monitor (a private server), so the RTP and sound-card series of the pipeline board
exist. Those two sources keep the service running after the calls end; it is stopped with
SIGINT at the end. The sound-card call is silent: it adds its own rule events (dead air, missed
greeting) but no segment, no forbidden phrase, no breach and no scorecard while it runs.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from qa.dashboards import scoped
from qa.rules import load_pack
from tests.metrics.prom import PromServer, free_port
from tests.pulse import PulseServer
from tests.scenarios.calls import PACK, SCRIPTS, render_calls

AGENT = "agent-7"
#: Grafana's variables as a board viewed over the last 15 minutes would fill them in.
VARIABLES = {"$node": ".*", "$agent": AGENT, "$__range": "15m", "$__rate_interval": "1m",
             "$__interval": "15s"}
#: Wall seconds the whole replay may take on two shared cores (it takes about 45).
REPLAY_TIMEOUT_S = 240


def forbidden_in_scripts() -> int:
    """Forbidden-phrase hits the scripts contain: once per rule per agent turn (the engine's
    rule), found by plain substring search in the script text."""
    pack = load_pack(PACK)

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^a-z ]", " ", text.lower().replace("'", "")).split())

    hits = 0
    for script in ("clean", "violations", "long"):
        for line in (SCRIPTS / f"{script}.txt").read_text().splitlines():
            who, _, text = line.partition(":")
            if who.strip() != "agent":
                continue
            for rule in pack.forbidden:
                hits += any(f" {norm(p)} " in f" {norm(text)} " for p in rule.phrases)
    return hits


class Lines:
    """Reads the service's JSON lines in a thread; `wait` for a condition on them."""

    def __init__(self, stream) -> None:
        self.items: list[dict] = []
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cv:
                self.items.append(json.loads(line))
                self._cv.notify_all()

    def wait(self, ok, timeout: float) -> list[dict]:
        with self._cv:
            if not self._cv.wait_for(lambda: ok(self.items), timeout):
                raise TimeoutError(f"service output so far: {self.items[-5:]}")
            return list(self.items)


def board_exprs(repo: Path) -> list[tuple[str, str, str]]:
    """(board, panel title, expression) for every target of every committed dashboard."""
    out = []
    for path in sorted((repo / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((path.stem, panel["title"], target["expr"]))
    return out


def concrete(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown dashboard variable in {expr}"
    return expr


@pytest.fixture(scope="module")
def pulse():
    server = PulseServer(sink="out", rate=48_000, channels=2).start()
    try:
        yield server
    finally:
        server.stop()


def test_every_dashboard_query_returns_the_calls_values(repo, tmp_path, pulse):
    calls = render_calls(tmp_path)
    port = free_port()
    # Prometheus first: it scrapes from the exporter's first second, so every series is seen
    # from its first value on.
    with PromServer(f"127.0.0.1:{port}") as prom:
        errors = (tmp_path / "stderr.txt").open("w")
        service = subprocess.Popen(
            [sys.executable, "-m", "qa", "run", "--json", "--rules", str(PACK), "--no-store",
             "--agent", AGENT, "--metrics-port", str(port),
             *(f"--source=file:{c.path}" for c in calls.values()),
             "--source=rtp://127.0.0.1:0", "--source=soundcard:pulse"],
            cwd=repo, stdout=subprocess.PIPE, stderr=errors, text=True, env=pulse.client_env(),
        )
        try:
            lines = Lines(service.stdout)
            files = {str(c.path) for c in calls.values()}
            started = lines.wait(lambda items: len(
                [i for i in items if i["type"] == "call_started"]) == 4, 60)
            file_calls = {i["call"] for i in started
                          if i["type"] == "call_started" and i["source"][5:] in files}
            assert len(file_calls) == 3
            items = lines.wait(lambda items: {i["call"] for i in items
                                              if i["type"] == "summary"} >= file_calls,
                               REPLAY_TIMEOUT_S)
            summaries = [i for i in items if i["type"] == "summary"]
            assert all(s["reason"] == "end of file" for s in summaries)
            bands = Counter(s["scorecard"]["band"] for s in summaries)

            # The last call's end reaches Prometheus within a few scrapes.
            prom.wait_for("sum(qa_calls_ended_total)", lambda v: v == 3)
            prom.wait_for("sum(qa_call_score_points_count)", lambda v: v == 3)
            # A scrape that began a second after this moment holds everything else written
            # at the same time (a fixed 2 s pause: too short when Prometheus waits for a core).
            since = time.time()
            prom.wait_for(f'max(timestamp(up{{job="{prom.job}"}}))', lambda v: v > since + 1)

            empty = []
            values = {}
            for board, title, expr in board_exprs(repo):
                result = prom.query(concrete(expr))
                values[(board, title, expr)] = result
                if not result:
                    empty.append(f"{board} / {title}: {expr}")
            assert empty == [], "panels without data:\n" + "\n".join(empty)
            panel = {(board, expr): result for (board, _, expr), result in values.items()}
            # Gauges read as they are: the silent sound-card call is the one still running.
            assert panel[("floor", scoped("sum(qa_calls_active)"))] == [({}, 1.0)]
            assert panel[("floor", scoped("sum(qa_calls_past_warning)"))] == [({}, 0.0)]
            assert panel[("floor", scoped("sum(qa_calls_past_limit)"))] == [({}, 0.0)]
            assert panel[("floor", scoped("max(qa_handle_time_limit_seconds)"))] == [({}, 300.0)]
            rtp = scoped("sum(rate(qa_rtp_packets_received_total[1m]))")
            assert panel[("pipeline", rtp)] == [({}, 0.0)]

            # The counters behind the panels hold exactly what the calls contained.
            in_scripts = forbidden_in_scripts()
            assert in_scripts == 3
            assert prom.value("sum(qa_forbidden_phrase_hits_total)") == in_scripts
            assert prom.value("sum(qa_handle_time_breaches_total)") == 1
            assert prom.value("sum(qa_calls_ended_total)") == 3
            assert prom.value("sum(qa_call_score_points_count)") == 3
            got_bands = {m["band"]: v for m, v in prom.query(
                "sum by (band) (qa_call_score_band_total)")}
            # Every band exists from the first scrape (at zero), so `increase()` on the
            # boards counts each call, not only the second one of a band.
            assert set(got_bands) == {"<75", "75-80", "80-85", "85-90", "90-95", "95-100"}
            assert {b: v for b, v in got_bands.items() if v} == bands == {
                "95-100": 1, "<75": 1, "80-85": 1}
            band_panel = next(r for (board, title, _), r in values.items()
                              if board == "floor" and "band" in title.lower())
            assert {m["band"] for m, v in band_panel if v > 0} == set(bands)
        finally:
            if service.poll() is None:
                service.send_signal(signal.SIGINT)
            try:
                service.wait(timeout=60)
            finally:
                if service.poll() is None:
                    service.kill()
                    service.wait()
                service.stdout.close()
                errors.close()
        assert service.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
