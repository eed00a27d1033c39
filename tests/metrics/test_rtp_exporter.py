"""Every counter of the RTP source reaches /metrics: a real exporter, scraped over HTTP.

The source is driven through `RtpSource.receive` with set arrival times and addresses, so each
counter moves by a known amount; the scrape reads them through the collector at scrape time.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from qa.metrics import MetricsServer
from qa.sources.rtp import COUNTERS, RtpOptions, RtpSource
from tests.sources.rtp.conftest import RecordingSink, rtp, telephone_event

#: Each counter of `RtpSource.stats()` and the series it is exported as.
EXPORTED = {
    "packets": "qa_rtp_packets_received_total",
    "bytes": "qa_source_received_bytes_total",
    "audio_packets": "qa_rtp_packets_audio_total",
    "lost": "qa_rtp_packets_lost_total",
    "late": "qa_rtp_packets_late_total",
    "duplicate": "qa_rtp_packets_duplicate_total",
    "malformed": "qa_rtp_packets_malformed_total",
    "unknown_payload": "qa_rtp_packets_unknown_payload_total",
    "dtmf": "qa_rtp_dtmf_keys_total",
    "calls": "qa_source_calls_total",
    "rtcp": "qa_rtp_rtcp_packets_total",
    "unknown_ssrc": "qa_rtp_packets_unknown_ssrc_total",
    "restarts": "qa_rtp_stream_restarts_total",
    "filled_samples": "qa_rtp_filled_samples_total",
    "foreign_source": "qa_rtp_packets_foreign_source_total",
    "clock_jumps": "qa_rtp_clock_jumps_total",
    "gap_rejected": "qa_rtp_gap_rejected_samples_total",
}
SILENCE = b"\xff" * 160  # 20 ms of µ-law silence
A, C, FORGER = ("10.0.0.1", 4000), ("10.0.0.2", 4002), ("10.0.0.9", 6666)


def _drive(source: RtpSource, sink: RecordingSink) -> None:
    """Moves every counter at least once (single port: agent SSRC 1, customer SSRC 2)."""
    def send(data: bytes, t: float, address=A) -> None:
        source.receive(sink, data, None, t, address=address)

    send(rtp(0, 0, 1, SILENCE), 0.0)
    send(rtp(0, 0, 2, SILENCE), 0.01, C)
    send(rtp(1, 160, 1, SILENCE), 0.02)
    send(rtp(1, 160, 1, SILENCE), 0.02)  # duplicate
    send(rtp(3, 480, 1, SILENCE), 0.06)  # 2 is lost (jitter window 0): 160 samples filled
    send(rtp(2, 320, 1, SILENCE), 0.07)  # late
    send(rtp(0, 0, 3, SILENCE), 0.07)  # a third SSRC: no channel left
    send(rtp(4, 640, 1, SILENCE), 0.08, FORGER)  # claims the agent's SSRC: foreign
    send(b"\x00garbage", 0.08)  # malformed
    send(bytes([0x80, 200]) + bytes(26), 0.08)  # RTCP
    send(rtp(4, 640, 1, SILENCE, pt=99), 0.08)  # unknown payload type
    send(rtp(5, 800, 1, telephone_event(5, True, 160), pt=101), 0.1)  # a key press
    send(rtp(6, 960 + 5 * 8000, 1, SILENCE), 0.12)  # 5 s ahead after 20 ms: not filled
    send(rtp(7, 8000 * 3600, 1, SILENCE), 0.14)  # an hour on: a restart
    source.finish(sink, "stopped")


def test_every_rtp_counter_is_scraped_from_the_exporter(registry, metrics):
    assert set(EXPORTED) == set(COUNTERS)
    source = RtpSource(RtpOptions(port=0, jitter_ms=0))
    server = MetricsServer(registry, port=0).start()
    try:
        metrics.watch_source("rtp", source)
        _drive(source, RecordingSink())
        with urllib.request.urlopen(server.url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.stop()
        source.close()
    scraped = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("source") == "rtp"
    }
    stats = source.stats()
    for key, name in EXPORTED.items():
        assert stats[key] > 0, key
        assert scraped.get(name) == stats[key], name
    assert (stats["foreign_source"], stats["unknown_ssrc"], stats["restarts"]) == (1, 1, 1)
    assert stats["gap_rejected"] > 4 * 8000
