"""The wire format between capture nodes and workers: lossless, and strict on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa.cluster.wire import (
    Result,
    decode_result,
    decode_work,
    encode_result,
    encode_work,
)
from qa.errors import WireFormatError
from qa.types import Segment, Speaker, Utterance, Word


def _utterance() -> Utterance:
    pcm = (np.sin(np.arange(3200) / 7.0) * 12000).astype(np.int16)
    return Utterance("call-1", Speaker.CUSTOMER, 16000, 19200, pcm, index=3, forced_split=True)


def test_work_round_trip_keeps_every_field_and_sample():
    utterance = _utterance()
    data = encode_work("0190-id", utterance, "en", "qa.results.node-1")
    work = decode_work(data)
    assert work.utterance_id == "0190-id"
    assert work.language == "en" and work.reply_to == "qa.results.node-1"
    got = work.utterance
    assert (got.call_id, got.speaker, got.start_sample, got.end_sample, got.index,
            got.forced_split) == ("call-1", Speaker.CUSTOMER, 16000, 19200, 3, True)
    assert np.array_equal(got.pcm, utterance.pcm)
    # The audio travels raw: the message is the PCM plus a small header.
    assert len(data) - utterance.pcm.nbytes < 300


def _telephony_utterance() -> Utterance:
    pcm8 = (np.sin(np.arange(1600) / 5.0) * 9000).astype(np.int16)
    before = (np.sin(np.arange(-29, 0) / 5.0) * 9000).astype(np.int16)
    after = (np.sin(np.arange(1600, 1629) / 5.0) * 9000).astype(np.int16)
    for part in (pcm8, before, after):
        part.flags.writeable = False
    return Utterance("call-8k", Speaker.AGENT, 32000, 35200, pcm8, index=1,
                     sample_rate=8000, context=(before, after))


def test_telephony_utterance_travels_at_8_khz_and_the_worker_decodes_what_a_local_one_would():
    """Telephony channels are cut at 8 kHz (issue 10). The capture node sends the 8 kHz
    samples with their context, half the bytes of 16 kHz; the worker resamples them once to
    exactly the 16 kHz samples a local worker would decode (`Utterance.pcm16`)."""
    utterance = _telephony_utterance()
    data = encode_work("id-8k", utterance, "en", "qa.results.n")
    got = decode_work(data).utterance
    assert got.sample_rate == 8000 and (got.start_sample, got.end_sample) == (32000, 35200)
    assert np.array_equal(got.pcm, utterance.pcm)
    assert np.array_equal(got.pcm16, utterance.pcm16)
    assert got.pcm16.shape == (3200,)
    # 8 kHz samples and 58 context samples, not the 3,200 samples of 16 kHz audio.
    assert len(data) - (1600 + 58) * 2 < 300
    # Without its context the edges would differ: the context is what makes it exact.
    bare = Utterance("call-8k", Speaker.AGENT, 32000, 35200, utterance.pcm, sample_rate=8000)
    assert not np.array_equal(bare.pcm16, utterance.pcm16)


def test_telephony_utterance_at_the_stream_start_has_no_context_before():
    utterance = _telephony_utterance()
    first = Utterance("call-8k", Speaker.AGENT, 0, 3200, utterance.pcm, sample_rate=8000,
                      context=(utterance.pcm[:0], utterance.context[1]))
    got = decode_work(encode_work("id", first, None, "qa.results.n")).utterance
    assert len(got.context[0]) == 0 and np.array_equal(got.context[1], utterance.context[1])
    assert np.array_equal(got.pcm16, first.pcm16)


def test_a_version_1_message_from_an_older_capture_node_is_still_read():
    utterance = _utterance()
    data = bytearray(encode_work("old", utterance, "en", "qa.results.n"))
    data[3] = 1
    got = decode_work(bytes(data)).utterance
    assert got.sample_rate == 16000 and np.array_equal(got.pcm, utterance.pcm)
    # Version 1 carried 16 kHz only.
    raw = json.dumps({**GOOD, "rate": 8000, "s1": 2}).encode()
    with pytest.raises(WireFormatError) as caught:
        decode_work(b"QAU\x01" + len(raw).to_bytes(4, "big") + raw + b"\0\0")
    assert caught.value.field == "rate"


def test_result_round_trip():
    segment = Segment("call-1", Speaker.AGENT, 1.0, 2.5, "Thank you, 你好", (Word(1.0, 1.4,
                      "Thank", 0.9),), True, "en", -0.2, 0.01)
    result = decode_result(encode_result(Result("id-7", (segment,), "", "w1", 0.5)))
    assert result.segments == (segment,)
    assert (result.utterance_id, result.worker, result.decode_seconds) == ("id-7", "w1", 0.5)


def _with_header(header: dict, pcm: bytes = b"\0\0") -> bytes:
    raw = json.dumps(header).encode()
    return b"QAU\x02" + len(raw).to_bytes(4, "big") + raw + pcm


GOOD = {"id": "x", "call": "c", "ch": "agent", "i": 0, "s0": 0, "s1": 1, "rate": 16000,
        "lang": None, "reply": "qa.results.n"}


@pytest.mark.parametrize(("data", "field"), [
    (_with_header({**GOOD, "rate": 44100}), "rate"),
    (_with_header({**GOOD, "rate": 0}), "rate"),
    (_with_header({**GOOD, "ctx": [0]}), "ctx"),
    (_with_header({**GOOD, "ctx": [-1, 0]}), "ctx"),
    (_with_header({**GOOD, "ctx": [5000, 0]}), "ctx"),
    (_with_header({**GOOD, "ctx": [2, 0]}), "ctx"),
    (_with_header({**GOOD, "rate": 8000, "s1": 2}, b"\0\0\0\0"), "pcm"),
    (_with_header({**GOOD, "ch": "boss"}), "ch"),
    (_with_header({k: v for k, v in GOOD.items() if k != "call"}), "call"),
    (_with_header({**GOOD, "i": "0"}), "i"),
    (_with_header({**GOOD, "s1": 5}), "pcm"),
    (_with_header(GOOD, b"\0\0\0"), "pcm"),
])
def test_bad_work_names_the_field(data, field):
    with pytest.raises(WireFormatError) as caught:
        decode_work(data)
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"QAU\x03....", b"QAU\x01\xff\xff\xff\xff{}",
                                  b"QAU\x01\x00\x00\x00\x02[]"])
def test_foreign_or_truncated_work_is_refused(data):
    with pytest.raises(WireFormatError):
        decode_work(data)


def test_bad_result_is_refused():
    with pytest.raises(WireFormatError):
        decode_result(b"QAR\x01{\"id\": \"x\"}")
    with pytest.raises(WireFormatError) as caught:
        decode_result(b"QAR\x01" + json.dumps({"id": "x", "segments": [{"call": "c"}]}).encode())
    assert caught.value.field == "segments"
