"""Every Prometheus metric of the service, defined in this one package (docs/metrics.md).

`QAMetrics` defines the metrics on a registry the caller passes (tests use a fresh
`CollectorRegistry`). `MetricsListener` updates them from the pipeline's notifications,
`QAMetrics.observe_scorecard` from finished scorecards, and `QAMetrics.timed` wraps the
transcription step to measure its real-time factor. Counters that the hot path owns (the
pipeline's queue, the sources' packet and frame counters) are not pushed per frame: a collector
reads them when Prometheus scrapes.

Labels stay bounded: rule ids come from the rule pack, speakers and source kinds are fixed
sets, agents are capped (`MetricsOptions.max_agents`) and can be folded into one value
(`agent_label=False`). A call id never appears in a label; rule events carry it as an
exemplar (visible in the OpenMetrics format) so a board can link a spike to the call.

The package: `definitions` (the metrics and their options), `collector` (what is read at scrape
time), `listener` (the pipeline's notifications), `server` (the HTTP endpoint).
"""

from qa.metrics.collector import RECORDING_FAILURE_STAGES, SOURCE_COUNTERS, HotCollector
from qa.metrics.definitions import (
    ALL_AGENTS,
    ASR_LATENCY_BUCKETS,
    END_REASONS,
    HANDLE_TIME_FRACTIONS,
    OTHER_AGENTS,
    RTF_BUCKETS,
    SCORE_BUCKETS,
    SOURCE_KINDS,
    AgentBook,
    MetricsOptions,
    QAMetrics,
    metric_names,
)
from qa.metrics.listener import MetricsListener, end_reason, is_prompt
from qa.metrics.server import MetricsServer, start_metrics_server

__all__ = [
    "ALL_AGENTS",
    "ASR_LATENCY_BUCKETS",
    "END_REASONS",
    "HANDLE_TIME_FRACTIONS",
    "OTHER_AGENTS",
    "RECORDING_FAILURE_STAGES",
    "RTF_BUCKETS",
    "SCORE_BUCKETS",
    "SOURCE_COUNTERS",
    "SOURCE_KINDS",
    "AgentBook",
    "HotCollector",
    "MetricsListener",
    "MetricsOptions",
    "MetricsServer",
    "QAMetrics",
    "end_reason",
    "is_prompt",
    "metric_names",
    "start_metrics_server",
]
