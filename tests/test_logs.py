"""`qa.logs.scrub`: secrets out of log lines, everything else kept."""

from __future__ import annotations

import logging

import pytest

from qa.logs import SecretFilter, scrub


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("< GET /ws/a-1?token=s3cret HTTP/1.1", "< GET /ws/a-1?token=[REDACTED] HTTP/1.1"),
        ("GET /agent/a-1?x=1&token=abc%2Fdef&y=2", "GET /agent/a-1?x=1&token=[REDACTED]&y=2"),
        ("url 'http://h/ws/a?access_token=zz'", "url 'http://h/ws/a?access_token=[REDACTED]'"),
        ("< Authorization: Bearer abc.def", "< Authorization: [REDACTED]"),
        ("< Cookie: session=1", "< Cookie: [REDACTED]"),
        ("agent a-1 connected (2 open)", "agent a-1 connected (2 open)"),
        ("tokens loaded: 3", "tokens loaded: 3"),
    ],
)
def test_scrub(line: str, expected: str) -> None:
    assert scrub(line) == expected


def test_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1,
                               "< GET %s HTTP/1.1", ("/ws/a?token=t0k",), None)
    assert SecretFilter().filter(record)
    assert record.getMessage() == "< GET /ws/a?token=[REDACTED] HTTP/1.1"
