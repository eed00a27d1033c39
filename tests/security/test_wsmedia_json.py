"""A websocket media stream (real websocket, Twilio Media Streams shape) that carries one
message of deeply nested JSON: it is counted as malformed and skipped like any other bad
message, and the call goes on to its normal end with all its audio."""

from __future__ import annotations

import numpy as np
from websockets.sync.client import connect

from qa.types import Speaker
from tests.sources.telephony.test_wsmedia import (  # noqa: F401 (server is a fixture)
    SID,
    server,
    twilio_session,
    ulaw_roundtrip,
)


def test_deeply_nested_json_is_a_malformed_message_not_the_end_of_the_call(server):  # noqa: F811
    # json.loads raises RecursionError (not ValueError) on it: the stream ended with
    # "error: internal" and a traceback, losing the rest of the call.
    running = server(insecure=True)
    tone = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 8000).astype(np.int16)
    nested = '{"event": "media", "streamSid": "' + SID + '", "media": ' + "[" * 50_000
    with connect(running.url + "/twilio", max_size=None) as ws:
        twilio_session(ws, "a-1", {"inbound": tone}, extra=[nested, "[" * 60_000])
        [(call_id, reason)] = running.wait_ended(1)
    running.stop()
    assert reason == "hangup"
    first, heard = running.sink.channel_audio(call_id, Speaker.CUSTOMER)
    assert first == 0 and np.array_equal(heard, ulaw_roundtrip(tone))
    assert running.source.stats()["malformed_messages"] == 2
