"""The Grafana dashboards, generated from code (`qa dashboards` writes grafana/dashboards/).

Three boards over the metrics of `qa.metrics`: Floor (supervisors), Agent (one agent, chosen
with the `$agent` variable) and Pipeline (ASR and capture health). Every board aggregates over
all the nodes Prometheus scrapes and can be narrowed to some with the `$node` variable: every
series carries the `node` label of its target (grafana/prometheus/nodes/, file-based service
discovery), and every query here is scoped by it (`scoped`). The JSON is Grafana's
dashboard model (schema 39); every panel queries the provisioned Prometheus datasource by
its fixed uid. The committed files must equal what `build_dashboards()` returns (a test
checks), so edit this module, never the JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The uid of grafana/provisioning/datasources/prometheus.yml.
DATASOURCE_UID = "qa-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39
#: Where `qa dashboards` writes by default: grafana/dashboards beside the package.
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
#: Healthy talk utilisation (docs/design.md): below is idle time, above is burn-out.
UTILISATION_LOW = 0.69
UTILISATION_HIGH = 0.74
_GRID_WIDTH = 24

JSON = dict[str, Any]


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel.

    Attributes:
        expr: The PromQL expression (may use `$agent` and Grafana's `$__range`).
        legend: Legend format (`{{rule}}`), empty for the series name.
        exemplar: Ask Prometheus for exemplars (rule events carry the call id).
        fmt: `time_series`, or `heatmap` for histogram buckets.
    """

    expr: str
    legend: str = ""
    exemplar: bool = False
    fmt: str = "time_series"


#: A metric named in a query, with its label matchers if it has any.
_SELECTOR = re.compile(r"\b((?:qa_[a-z0-9_]+)|up)\b(\{[^}]*\})?(?!\s*\()")
#: The matcher every query carries: the nodes chosen on the board (all by default).
NODE_MATCHER = 'node=~"$node"'


def scoped(expr: str) -> str:
    """`expr` with every metric selector narrowed to the board's `$node` choice."""

    def narrow(match: re.Match[str]) -> str:
        name, matchers = match.group(1), match.group(2)
        if matchers is None:
            return f"{name}{{{NODE_MATCHER}}}"
        inner = matchers[1:-1].strip()
        return f"{name}{{{NODE_MATCHER}{', ' + inner if inner else ''}}}"

    return _SELECTOR.sub(narrow, expr)


def _target(query: Query, ref: str) -> JSON:
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "exemplar": query.exemplar,
        "expr": scoped(query.expr),
        "format": query.fmt,
        "legendFormat": query.legend or "__auto",
        "range": True,
        "refId": ref,
    }


def _thresholds(steps: list[tuple[float | None, str]]) -> JSON:
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


class _Board:
    """Lays panels out left to right in rows of 24 grid units."""

    def __init__(self) -> None:
        self.panels: list[JSON] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    def add(
        self,
        title: str,
        kind: str,
        queries: list[Query],
        width: int,
        height: int = 8,
        unit: str = "short",
        description: str = "",
        thresholds: list[tuple[float | None, str]] | None = None,
        minmax: tuple[float | None, float | None] = (None, None),
        options: JSON | None = None,
    ) -> None:
        if self._x + width > _GRID_WIDTH:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        defaults: JSON = {"unit": unit,
                          "thresholds": _thresholds(thresholds or [(None, "green")])}
        if minmax[0] is not None:
            defaults["min"] = minmax[0]
        if minmax[1] is not None:
            defaults["max"] = minmax[1]
        if thresholds and kind == "timeseries":
            defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
        self.panels.append({
            "datasource": DATASOURCE,
            "description": description,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "gridPos": {"h": height, "w": width, "x": self._x, "y": self._y},
            "id": len(self.panels) + 1,
            "options": options or {},
            "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(queries)],
            "title": title,
            "type": kind,
        })
        self._x += width
        self._row_h = max(self._row_h, height)


def _variable(name: str, label: str, query: str, *, every: bool) -> JSON:
    """A query variable over label values (`every`: several at once, `All` = every value)."""
    variable: JSON = {
        "current": {},
        "datasource": DATASOURCE,
        "definition": query,
        "includeAll": every,
        "label": label,
        "multi": every,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query,
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "type": "query",
    }
    if every:
        variable["allValue"] = ".*"
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return variable


#: The node filter every board has: all nodes unless narrowed.
NODE_VARIABLE = _variable("node", "Node", "label_values(qa_build_info, node)", every=True)


def _dashboard(uid: str, title: str, description: str, board: _Board,
               variables: list[JSON] | None = None) -> JSON:
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": False,
        "graphTooltip": 1,
        "links": [{"asDropdown": False, "includeVars": True, "keepTime": True,
                   "tags": ["qa"], "title": "Call QA", "type": "dashboards"}],
        "panels": board.panels,
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["qa"],
        "templating": {"list": [NODE_VARIABLE, *(variables or [])]},
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
    }


_STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
         "colorMode": "background", "graphMode": "area", "textMode": "value"}
_BARS = {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}


def floor() -> JSON:
    """The supervisors' board: calls, handle time, violations, compliance, scores, agents."""
    b = _Board()
    b.add("Active calls", "stat", [Query("sum(qa_calls_active)")], 4, 5, options=_STAT)
    b.add("Calls past the warning", "stat", [Query("sum(qa_calls_past_warning)")], 4, 5,
          thresholds=[(None, "green"), (1, "orange")], options=_STAT,
          description="Calls in progress that got a handle-time warning.")
    b.add("Calls past the limit", "stat", [Query("sum(qa_calls_past_limit)")], 4, 5,
          thresholds=[(None, "green"), (1, "red")], options=_STAT,
          description="Calls in progress past the handle-time limit: transfer them.")
    b.add("Compliance rate", "stat",
          [Query("sum(increase(qa_calls_compliant_total[$__range]))"
                 " / sum(increase(qa_calls_ended_total[$__range]))")],
          4, 5, unit="percentunit", minmax=(0, 1),
          thresholds=[(None, "red"), (0.8, "orange"), (0.95, "green")], options=_STAT,
          description="Share of ended calls with no event that took points off.")
    b.add("Calls ended", "stat", [Query("sum(increase(qa_calls_ended_total[$__range]))")],
          4, 5, options=_STAT)
    b.add("Prompts per minute", "stat",
          [Query("sum(rate(qa_prompts_sent_total[5m])) * 60")], 4, 5, options=_STAT)
    b.add("Handle-time distribution", "bargauge",
          [Query("sum by (le) (increase(qa_call_handle_time_seconds_bucket[$__range]))",
                 "{{le}}", fmt="heatmap")],
          12, 9, options={**_BARS, "orientation": "vertical"},
          description="Ended calls by handle time (s); the limit is the configured "
          "qa_handle_time_limit_seconds.")
    b.add("Handle time p50 / p95 against the limit", "timeseries",
          [Query("histogram_quantile(0.5, sum by (le) "
                 "(rate(qa_call_handle_time_seconds_bucket[15m])))", "p50"),
           Query("histogram_quantile(0.95, sum by (le) "
                 "(rate(qa_call_handle_time_seconds_bucket[15m])))", "p95"),
           Query("max(qa_handle_time_limit_seconds)", "limit")],
          12, 9, unit="s")
    b.add("Violations per rule", "timeseries",
          [Query("sum by (rule) (increase(qa_violations_total[5m]))", "{{rule}}")], 12, 9,
          description="Events that took points off, per 5 minutes.")
    b.add("Rule events (exemplars link to the call)", "timeseries",
          [Query("sum by (rule, kind) (rate(qa_rule_events_total[5m])) * 60",
                 "{{rule}} {{kind}}", exemplar=True)], 12, 9, unit="short",
          description="Events per minute; hover an exemplar dot for its call id.")
    b.add("Violations per agent", "bargauge",
          [Query("topk(20, sum by (agent) (increase(qa_agent_violations_total[$__range])))",
                 "{{agent}}")], 8, 10, options=_BARS)
    b.add("Score bands", "bargauge",
          [Query("sum by (band) (increase(qa_call_score_band_total[$__range]))", "{{band}}")],
          8, 10, options=_BARS)
    b.add("Talk utilisation per agent (1h)", "bargauge",
          [Query("sum by (agent) (rate(qa_agent_on_call_seconds_total[1h]))"
                 " / sum by (agent) (rate(qa_agent_logged_in_seconds_total[1h]))",
                 "{{agent}}")],
          8, 10, unit="percentunit", minmax=(0, 1),
          thresholds=[(None, "orange"), (UTILISATION_LOW, "green"),
                      (UTILISATION_HIGH, "red")], options=_BARS,
          description="On-call time over logged-in time; healthy between 69% and 74%.")
    return _dashboard("qa-floor", "Call QA / Floor",
                      "Live calls, handle time, violations and agents for supervisors.", b)


def agent() -> JSON:
    """One agent's board, chosen with the `$agent` variable."""
    b = _Board()
    sel = '{agent="$agent"}'
    b.add("Calls handled", "stat",
          [Query(f"sum(increase(qa_agent_calls_total{sel}[$__range]))")], 6, 5, options=_STAT)
    b.add("Steps missed", "stat",
          [Query(f"sum(increase(qa_agent_script_steps_missed_total{sel}[$__range]))")], 6, 5,
          thresholds=[(None, "green"), (1, "orange")], options=_STAT)
    b.add("Forbidden phrases", "stat",
          [Query(f"sum(increase(qa_agent_forbidden_phrase_hits_total{sel}[$__range]))")], 6, 5,
          thresholds=[(None, "green"), (1, "red")], options=_STAT)
    b.add("Average score", "stat",
          [Query(f"sum(increase(qa_agent_score_points_sum{sel}[$__range]))"
                 f" / sum(increase(qa_agent_score_points_count{sel}[$__range]))")],
          6, 5, minmax=(0, 100), options=_STAT,
          thresholds=[(None, "red"), (75, "orange"), (85, "green")])
    b.add("Calls per hour", "timeseries",
          [Query(f"sum(rate(qa_agent_calls_total{sel}[15m])) * 3600", "calls/h")], 12, 8)
    b.add("Steps missed and forbidden phrases", "timeseries",
          [Query(f"sum(increase(qa_agent_script_steps_missed_total{sel}[15m]))",
                 "steps missed"),
           Query(f"sum(increase(qa_agent_forbidden_phrase_hits_total{sel}[15m]))",
                 "forbidden phrases"),
           Query(f"sum(increase(qa_agent_violations_total{sel}[15m]))", "all violations")],
          12, 8)
    b.add("Score (mean per 1h)", "timeseries",
          [Query(f"sum(rate(qa_agent_score_points_sum{sel}[1h]))"
                 f" / sum(rate(qa_agent_score_points_count{sel}[1h]))", "score")],
          12, 8, minmax=(0, 100), thresholds=[(None, "red"), (75, "orange"), (85, "green")])
    b.add("Talk utilisation (1h)", "timeseries",
          [Query(f"sum(rate(qa_agent_on_call_seconds_total{sel}[1h]))"
                 f" / sum(rate(qa_agent_logged_in_seconds_total{sel}[1h]))", "utilisation")],
          12, 8, unit="percentunit", minmax=(0, 1),
          thresholds=[(None, "orange"), (UTILISATION_LOW, "green"),
                      (UTILISATION_HIGH, "red")])
    variable = _variable("agent", "Agent",
                         scoped("label_values(qa_agent_calls_total, agent)"), every=False)
    return _dashboard("qa-agent", "Call QA / Agent",
                      "One agent's calls, missed steps, forbidden phrases and scores.", b,
                      [variable])


def pipeline() -> JSON:
    """The service's health: ASR latency, queue, real-time factor, dropped audio, packets."""
    b = _Board()
    b.add("ASR latency p50 / p95", "timeseries",
          [Query("histogram_quantile(0.5, sum by (le) (rate(qa_asr_latency_seconds_bucket[5m])))",
                 "p50"),
           Query("histogram_quantile(0.95, sum by (le) "
                 "(rate(qa_asr_latency_seconds_bucket[5m])))", "p95")],
          12, 8, unit="s", thresholds=[(None, "green"), (3, "red")],
          description="End of speech to final text; the alert fires on p95 over 3 s.")
    b.add("Utterance queue depth", "timeseries", [Query("sum(qa_asr_queue_depth)", "queued")],
          12, 8, thresholds=[(None, "green"), (10, "orange")])
    b.add("Real-time factor", "timeseries",
          [Query("sum(rate(qa_asr_busy_seconds_total[5m]))"
                 " / sum(rate(qa_asr_audio_seconds_total[5m]))", "mean"),
           Query("histogram_quantile(0.95, sum by (le) "
                 "(rate(qa_asr_real_time_factor_bucket[5m])))", "p95")],
          12, 8, thresholds=[(None, "green"), (1, "red")],
          description="Transcription time over audio length; above 1 the workers fall behind.")
    b.add("Dropped audio", "timeseries",
          [Query("sum(increase(qa_utterances_dropped_total[5m]))", "utterances (queue full)"),
           Query("sum by (source) (increase(qa_ring_dropped_samples_total[5m]))",
                 "ring overrun samples {{source}}"),
           Query("sum(increase(qa_soundcard_overflows_total[5m]))", "sound-card overflows"),
           Query("sum(increase(qa_audio_gap_seconds_total[5m]))", "gap seconds")],
          12, 8)
    b.add("RTP packets per second", "timeseries",
          [Query("sum(rate(qa_rtp_packets_received_total[1m]))", "received"),
           Query("sum(rate(qa_rtp_packets_lost_total[1m]))", "lost"),
           Query("sum(rate(qa_rtp_packets_late_total[1m]))", "late"),
           Query("sum(rate(qa_rtp_packets_duplicate_total[1m]))", "duplicate"),
           Query("sum(rate(qa_rtp_packets_malformed_total[1m]))", "malformed")],
          12, 8, unit="pps")
    b.add("Audio samples per second by source", "timeseries",
          [Query("sum by (source) (rate(qa_source_audio_samples_total[1m]))", "{{source}}")],
          12, 8)
    b.add("Active calls", "stat", [Query("sum(qa_calls_active)")], 8, 5, options=_STAT)
    b.add("Talk seconds per minute by speaker", "timeseries",
          [Query("sum by (speaker) (rate(qa_talk_seconds_total[5m])) * 60", "{{speaker}}"),
           Query("sum(rate(qa_dead_air_seconds_total[15m])) * 60", "dead air"),
           Query("sum(rate(qa_talk_over_seconds_total[15m])) * 60", "talk-over")],
          8, 5, unit="s")
    b.add("Version", "stat", [Query("max by (version) (qa_build_info)", "{{version}}")], 8, 5,
          options={**_STAT, "textMode": "name", "colorMode": "none", "graphMode": "none"})
    b.add("Nodes up", "stat", [Query('sum(up{job="qa"})', "up"),
                               Query('count(up{job="qa"})', "scraped")], 8, 5,
          options=_STAT, description="Nodes answering the scrape, of those discovered.")
    b.add("ASR latency p95 by node", "timeseries",
          [Query("histogram_quantile(0.95, sum by (le, node) "
                 "(rate(qa_asr_latency_seconds_bucket[5m])))", "{{node}}")],
          16, 5, unit="s", thresholds=[(None, "green"), (3, "red")],
          description="A node that falls behind shows here before it moves the total.")
    return _dashboard("qa-pipeline", "Call QA / Pipeline",
                      "ASR latency, queue, real-time factor, dropped audio and packets.", b)


def build_dashboards() -> dict[str, str]:
    """Every dashboard as the exact text of its committed file.

    Returns:
        File name (`floor.json`, ...) to JSON text (sorted keys, 2-space indent, final newline).
    """
    boards = {"floor.json": floor(), "agent.json": agent(), "pipeline.json": pipeline()}
    return {name: json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            for name, board in boards.items()}


def write_dashboards(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Writes every dashboard into `directory`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in build_dashboards().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_dashboards(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of dashboards whose file in `directory` is missing or differs from the code."""
    stale = []
    for name, text in build_dashboards().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def expressions(board: JSON) -> list[str]:
    """Every PromQL expression of a dashboard's panels (template variables are not PromQL)."""
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]
