"""`rtp://` URLs and option checks."""

from __future__ import annotations

import pytest

from qa.errors import ConfigError, SourceError
from qa.sources.rtp import RtpOptions, RtpSource, parse_rtp_url
from qa.sources.spec import open_source
from qa.types import Speaker


def test_port_pair_url():
    options = parse_rtp_url("rtp://0.0.0.0:4000,4002?jitter_ms=80&timeout=2.5&dtmf_pt=96&agent=a1")
    assert (options.host, options.port, options.customer_port) == ("0.0.0.0", 4000, 4002)
    assert (options.jitter_ms, options.inactivity_timeout_s) == (80.0, 2.5)
    assert (options.dtmf_payload_type, options.agent_id) == (96, "a1")


def test_single_port_url_with_ssrc_map():
    options = parse_rtp_url("rtp://127.0.0.1:5004?ssrc=0x1234,99")
    assert options.customer_port is None
    assert options.ssrc_map == ((0x1234, Speaker.AGENT), (99, Speaker.CUSTOMER))


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("udp://127.0.0.1:5004", "scheme"),
        ("rtp://127.0.0.1", "port"),
        ("rtp://127.0.0.1:50x4", "port"),
        ("rtp://127.0.0.1:1,2,3", "port"),
        ("rtp://127.0.0.1:70000", "port"),
        ("rtp://127.0.0.1:5004?jitter_ms=soon", "jitter_ms"),
        ("rtp://127.0.0.1:5004?colour=blue", "colour"),
        ("rtp://127.0.0.1:5004?ssrc=1,2,3", "ssrc"),
        ("rtp://127.0.0.1:5004?timeout=0", "inactivity_timeout_s"),
        ("rtp://127.0.0.1:5004?timeout=-2", "inactivity_timeout_s"),
        ("rtp://127.0.0.1:5004?timeout=nan", "inactivity_timeout_s"),
        ("rtp://127.0.0.1:5004?timeout=inf", "inactivity_timeout_s"),
        ("rtp://127.0.0.1:5004?jitter_ms=nan", "jitter_ms"),
        ("rtp://127.0.0.1:5004?jitter_ms=-1", "jitter_ms"),
        ("rtp://127.0.0.1:5004?jitter_ms=inf", "jitter_ms"),
        ("rtp://127.0.0.1:5004?dtmf_pt=-1", "dtmf_payload_type"),
        ("rtp://127.0.0.1:5004?ssrc=1,1", "ssrc"),
        ("rtp://127.0.0.1:5004?ssrc=0x10,16", "ssrc"),
        ("rtp://127.0.0.1:5004?ssrc=-1", "ssrc"),
        ("rtp://127.0.0.1:5004?ssrc=0x100000000", "ssrc"),
        ("rtp://127.0.0.1:5004?ssrc=", "ssrc"),
        ("rtp://127.0.0.1:-1", "port"),
    ],
)
def test_bad_urls_name_the_field(url, field):
    with pytest.raises(ConfigError) as info:
        parse_rtp_url(url)
    assert info.value.field == field
    message = str(info.value)
    assert "\n" not in message and url in message and field in message
    if url.startswith("rtp://"):  # the same one-line error through the --source parser
        with pytest.raises(ConfigError, match=field):
            open_source(url)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_gap_s": float("nan")}, "max_gap_s"),
        ({"gap_slack_ms": float("inf")}, "gap_slack_ms"),
        ({"gap_slack_ms": -1.0}, "gap_slack_ms"),
        ({"source_lock_s": float("nan")}, "source_lock_s"),
        ({"ssrc_map": ((7, Speaker.AGENT), (7, Speaker.CUSTOMER))}, "ssrc_map"),
    ],
)
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        RtpOptions(**kwargs)
    assert info.value.field == field


def test_port_in_use_is_a_source_error():
    with RtpSource(RtpOptions(port=0)) as first, pytest.raises(SourceError, match="cannot bind"):
        RtpSource(RtpOptions(port=first.ports[0]))
