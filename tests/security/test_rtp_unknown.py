"""Real UDP packets to a running single-port `RtpSource`: packets of a third SSRC (both
channels taken) and of an unknown payload type are dropped, counted, and logged at a bounded
rate, so a flood shows in the log without filling it."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np

from qa._native import g711
from qa.sources.rtp import RtpOptions
from tests.sources.rtp.conftest import (
    RecordingSink,
    rtp,
    running,  # noqa: F401 (the fixture)
)


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the RTP source"
        time.sleep(0.02)


def test_a_flood_from_an_unknown_ssrc_is_counted_and_logged_once_a_second(running, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG, logger="qa.sources.rtp")
    sink = RecordingSink()
    source = running(RtpOptions(port=0, inactivity_timeout_s=2.0), sink)
    payload = g711.ulaw_encode(np.full(160, 500, np.int16)).tobytes()
    port = ("127.0.0.1", source.ports[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as send:
        for seq in range(5):  # the agent and the customer take the two channels
            send.sendto(rtp(seq, seq * 160, 0xA, payload), port)
            send.sendto(rtp(seq, seq * 160, 0xC, payload), port)
        for seq in range(300):
            send.sendto(rtp(seq, seq * 160, 0xBAD, payload), port)
            send.sendto(rtp(5 + seq, (5 + seq) * 160, 0xA, payload, pt=99), port)
        _wait(lambda: source.stats()["packets"] == 610)
    stats = source.stats()
    assert stats["unknown_ssrc"] == 300 and stats["unknown_payload"] == 300
    unknown = [r for r in caplog.records if "SSRC 0xbad" in r.getMessage()]
    assert 1 <= len(unknown) <= 3  # one line a second at most, with the count since
    assert unknown[0].levelno == logging.INFO and "both channels are taken" in \
        unknown[0].getMessage()
    payload_lines = [r for r in caplog.records if "payload type 99" in r.getMessage()]
    assert 1 <= len(payload_lines) <= 3
