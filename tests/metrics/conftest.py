"""Fixtures for the metrics tests: fresh registries, the metrics and their listener."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from qa.metrics import MetricsListener, MetricsOptions, QAMetrics
from qa.types import CallInfo, Speaker


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> QAMetrics:
    return QAMetrics(registry, MetricsOptions())


@pytest.fixture
def listener(metrics: QAMetrics) -> MetricsListener:
    return MetricsListener(metrics)


def call_info(call_id: str, agent: str) -> CallInfo:
    """A two-channel call as a source would announce it."""
    return CallInfo(call_id=call_id, agent_id=agent, source="file:test.wav", started_at=0.0,
                    channels=(Speaker.AGENT, Speaker.CUSTOMER), sample_rate=16000)
