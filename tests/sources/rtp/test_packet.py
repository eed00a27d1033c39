"""RTP header parsing (RFC 3550 5.1) and RFC 4733 event payloads."""

from __future__ import annotations

import pytest

from qa.errors import QAError, RtpPacketError
from qa.sources.rtp import parse_rtp, parse_telephone_event
from tests.sources.rtp.conftest import rtp, telephone_event


def test_plain_header():
    packet = parse_rtp(rtp(65535, 0xFFFFFFF0, 0xDEADBEEF, b"\x01\x02\x03", pt=8, marker=True))
    assert (packet.version, packet.payload_type) == (2, 8)
    assert packet.marker and not packet.padding
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (65535, 0xFFFFFFF0, 0xDEADBEEF)
    assert packet.csrcs == () and packet.extension is None
    assert bytes(packet.payload) == b"\x01\x02\x03"


def test_csrc_extension_and_padding_are_skipped():
    data = rtp(7, 160, 42, b"audio!", csrcs=(11, 22), extension=(0xBEDE, b"\x10\xaa\x00\x00"),
               padding=3)
    packet = parse_rtp(data)
    assert packet.csrcs == (11, 22)
    assert packet.extension == (0xBEDE, b"\x10\xaa\x00\x00")
    assert packet.padding
    assert bytes(packet.payload) == b"audio!"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00\x01\x00\x00", "short header"),
        (rtp(1, 0, 1, b"x", version=1), "wrong version"),
        (rtp(1, 0, 1, b"", csrcs=(1, 2))[:-4], "CSRC list past end"),
        (rtp(1, 0, 1, b"", extension=(1, b"abcdefgh"))[:-4], "extension past end"),
        # X bit set but only half of the 4-byte extension header present.
        (bytes([0x90]) + rtp(1, 0, 1, b"")[1:12] + b"\x00\x01", "extension past end"),
        (rtp(1, 0, 1, b"ab", padding=1)[:-1] + b"\x09", "bad padding length"),
        (rtp(1, 0, 1, b"ab", padding=1)[:-1] + b"\x00", "bad padding length"),
    ],
)
def test_malformed_packets_say_why(data, reason):
    with pytest.raises(RtpPacketError) as info:
        parse_rtp(data)
    assert info.value.reason == reason
    assert isinstance(info.value, QAError) and isinstance(info.value, ValueError)


def test_telephone_event_payload():
    event = parse_telephone_event(telephone_event(11, True, 1200, volume=7))
    assert (event.event, event.end, event.volume, event.duration) == (11, True, 7, 1200)
    with pytest.raises(RtpPacketError, match="truncated telephone-event"):
        parse_telephone_event(b"\x05\x80")
