"""The sample call through `qa run`: a two-channel FLAC, owner-only, as long as the call, in
the store; lossless outside the masks; and the masked span, decoded and transcribed with the
real Whisper model, carries no digit of the account number the transcript redacted, while the
same span of the original does (so the test fails when masking does not happen)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import numpy as np
import pytest

from qa.store import CallStore, StoreOptions
from qa.types import Speaker, Utterance
from tests.recordings.conftest import SAMPLE, decode, probe

pytestmark = pytest.mark.slow

#: The account number the customer dictates in examples/sample_call.txt.
ACCOUNT = "4729183"
_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def digits_of(text: str) -> str:
    """The digits a transcript says, as numerals or as words, in order."""
    out = []
    for token in re.findall(r"[0-9]|[a-z]+", text.lower()):
        out.append(token if token.isdigit() else _DIGIT_WORDS.get(token, ""))
    return "".join(out)


def transcribe(transcriber, pcm: np.ndarray, first: int, speaker: Speaker) -> str:
    utterance = Utterance("check", speaker, first, first + len(pcm), np.ascontiguousarray(pcm))
    return " ".join(s.text for s in transcriber.transcribe(utterance, "en"))


@pytest.fixture(scope="module")
def stored(sample_run):
    with CallStore(StoreOptions(path=sample_run.db, read_only=True)) as store:
        return store.call(sample_run.call_id), store.recording(sample_run.call_id)


def test_sample_call_is_recorded_as_owner_only_two_channel_flac(sample_run, stored):
    record, recording = stored
    assert recording is not None, "no recording row for the call"
    path = Path(recording.path)
    assert path.is_file()
    assert path.is_relative_to(sample_run.recordings)
    assert path.suffix == ".flac" and path.stem == sample_run.call_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (sample_run.recordings, path.parent, path.parent.parent,
                   path.parent.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    info = probe(path)
    (stream,) = info["streams"]
    assert stream["codec_name"] == "flac"
    assert stream["channels"] == 2
    assert int(stream["sample_rate"]) == 16000
    original = probe(SAMPLE)["streams"][0]
    assert float(stream["duration"]) == pytest.approx(float(original["duration"]), abs=0.01)
    assert recording.duration == pytest.approx(record.duration, abs=0.05)
    assert recording.bytes == path.stat().st_size
    # Compressed: well under the 16-bit PCM of the same audio.
    assert recording.bytes < 0.75 * recording.duration * 16000 * 2 * 2
    assert not list((sample_run.recordings / ".partial").iterdir()), "spool files left"


def test_masks_cover_the_redacted_number_and_nothing_else(sample_run, stored):
    record, recording = stored
    redacted = [s for s in record.segments if "[NUMBER]" in s.text]
    assert redacted, "the transcript did not redact the account number"
    assert recording.masked_spans
    for segment in redacted:
        assert any(m.channel == segment.speaker and m.start <= segment.start
                   and m.end >= segment.end for m in recording.masked_spans), segment
    masked, rate = decode(Path(recording.path))
    original, original_rate = decode(SAMPLE)
    assert rate == original_rate and masked.shape == original.shape
    inside = np.zeros(len(masked), bool)
    for span in recording.masked_spans:
        assert span.channel == Speaker.CUSTOMER
        inside[int(span.start * rate) : int(np.ceil(span.end * rate))] = True
    # Lossless everywhere else: the agent's channel and the customer's outside the mask.
    assert np.array_equal(masked[:, 0], original[:, 0])
    assert np.array_equal(masked[~inside, 1], original[~inside, 1])
    # Inside, a 1 kHz tone: its spectrum peaks at 1 kHz.
    tone = masked[inside, 1].astype(np.float64)
    peak = np.argmax(np.abs(np.fft.rfft(tone))) * rate / len(tone)
    assert peak == pytest.approx(1000, abs=5)


def test_masked_span_transcribes_to_no_digits(sample_run, stored, transcriber):
    _, recording = stored
    masked, rate = decode(Path(recording.path))
    original, _ = decode(SAMPLE)
    for span in recording.masked_spans:
        first, last = int(span.start * rate), int(np.ceil(span.end * rate))
        column = 1 if span.channel == Speaker.CUSTOMER else 0
        heard_original = transcribe(transcriber, original[first:last, column], first,
                                    span.channel)
        heard_masked = transcribe(transcriber, masked[first:last, column], first, span.channel)
        # The check can fail: the original span does say the number.
        assert len(set(digits_of(heard_original)) & set(ACCOUNT)) >= 4, heard_original
        assert digits_of(heard_masked) == "", heard_masked


def test_whole_masked_customer_channel_carries_no_part_of_the_number(sample_run, stored,
                                                                      transcriber):
    _, recording = stored
    masked, _ = decode(Path(recording.path))
    heard = digits_of(transcribe(transcriber, masked[:, 1], 0, Speaker.CUSTOMER))
    pieces = {ACCOUNT[i : i + 4] for i in range(len(ACCOUNT) - 3)}
    assert not any(piece in heard for piece in pieces), heard
