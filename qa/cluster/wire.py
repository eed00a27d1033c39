"""The wire format between capture nodes (`qa run --asr nats://...`) and recognition workers.

Two messages, each versioned by its first four bytes, so either side refuses a message it
does not understand with an error naming the field rather than misreading it:

- **Work** (`QAU` + version 2), one utterance: a 4-byte big-endian header length, a UTF-8 JSON
  header (utterance id, call id, channel, index, first and last sample, sample rate, context
  lengths, language, the subject the result goes to), then the raw little-endian int16 PCM:
  the context before, the utterance, the context after. Audio is the bulk of the message
  (32,000 bytes per second of speech at 16 kHz), so it is not wrapped in JSON or base64, which
  would add a third. Telephony utterances travel at their own 8 kHz rate with their context
  samples (half the bytes); the worker resamples them once (`Utterance.pcm16`) to exactly the
  16 kHz samples a local worker would decode. Version 1 (16 kHz only, no context) is still
  read, so workers can be upgraded before the capture nodes.
- **Result** (`QAR` + version 1): one UTF-8 JSON object with the utterance id, the segments
  (times on the call clock) and, when the worker failed on it, the error text.

The utterance id is a UUIDv7 (`qa.ids.time_uuid`) made once on the capture node; it is the
JetStream message id of the work message (publish deduplication) and of its result, and the
key under which the capture node matches and deduplicates results.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from qa.errors import WireFormatError
from qa.types import SAMPLE_RATE, Segment, Speaker, Utterance, Word

__all__ = ["RESULT_MAGIC", "WORK_MAGIC", "WORK_MAGIC_V1", "Result", "Work", "decode_result",
           "decode_work", "encode_result", "encode_work"]

WORK_MAGIC = b"QAU\x02"
#: The first version: 16 kHz only, no context (still accepted from older capture nodes).
WORK_MAGIC_V1 = b"QAU\x01"
RESULT_MAGIC = b"QAR\x01"
_HEADER_LEN = struct.Struct(">I")
#: A work header is a few hundred bytes; anything near this is not ours.
_MAX_HEADER = 64 * 1024
#: Context samples on either side: the resampler reads a few dozen past a span's edge
#: (`qa.frontend`'s `resampler_reach`); thousands would be a bug or not ours.
_MAX_CONTEXT = 4096


@dataclass(frozen=True, slots=True)
class Work:
    """One utterance to transcribe, as a worker receives it.

    Attributes:
        utterance_id: The id made on the capture node (UUIDv7 text).
        utterance: The utterance at the rate it was cut (8 kHz telephony with its context:
            `pcm16` resamples it here); its `closed_at` is the capture node's clock: left at 0.
        language: Language to decode in, or None to detect it.
        reply_to: Subject the result is published on (the capture node's results subject).
    """

    utterance_id: str
    utterance: Utterance
    language: str | None
    reply_to: str


@dataclass(frozen=True, slots=True)
class Result:
    """The segments of one utterance, as the capture node receives them.

    Attributes:
        utterance_id: The utterance's id.
        segments: Final segments on the call clock (empty when nothing was said or on error).
        error: Why the worker could not transcribe it ('' when it could).
        worker: The worker that transcribed it (host and process), for the logs.
        decode_seconds: Wall time of the decode that included it, on the worker.
    """

    utterance_id: str
    segments: tuple[Segment, ...]
    error: str = ""
    worker: str = ""
    decode_seconds: float = 0.0


def encode_work(utterance_id: str, utterance: Utterance, language: str | None,
                reply_to: str) -> bytes:
    """The bytes of a work message (see the module docstring).

    The utterance travels at its own rate: a telephony utterance (cut at 8 kHz) keeps its
    8 kHz samples and its context, and the worker resamples it.
    """
    before, after = utterance.context or (utterance.pcm[:0], utterance.pcm[:0])
    header = json.dumps({
        "id": utterance_id,
        "call": utterance.call_id,
        "ch": str(utterance.speaker),
        "i": utterance.index,
        "s0": utterance.start_sample,
        "s1": utterance.end_sample,
        "rate": utterance.sample_rate,
        "ctx": [len(before), len(after)] if utterance.context is not None else None,
        "split": utterance.forced_split,
        "lang": language,
        "reply": reply_to,
    }, separators=(",", ":")).encode()
    parts = [WORK_MAGIC, _HEADER_LEN.pack(len(header)), header]
    parts += [np.ascontiguousarray(a, dtype="<i2").tobytes() for a in (before, utterance.pcm,
                                                                      after)]
    return b"".join(parts)


def _field(header: dict, name: str, kind: type | tuple[type, ...], what: str):
    value = header.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise WireFormatError(what, f"missing or not {getattr(kind, '__name__', kind)}",
                              field=name)
    return value


def decode_work(data: bytes) -> Work:
    """Parses a work message (version 2, or version 1 from an older capture node).

    Raises:
        WireFormatError: not a work message of a known version, or a field is missing or wrong.
    """
    what = "work message"
    if data[:4] not in (WORK_MAGIC, WORK_MAGIC_V1):
        raise WireFormatError(what, f"unknown magic/version {data[:4]!r} (want {WORK_MAGIC!r})")
    if len(data) < 8:
        raise WireFormatError(what, "truncated before the header length")
    (size,) = _HEADER_LEN.unpack_from(data, 4)
    if size > _MAX_HEADER or 8 + size > len(data):
        raise WireFormatError(what, f"header length {size} past the end of {len(data)} bytes")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireFormatError(what, f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireFormatError(what, "header is not a JSON object")
    utterance_id = _field(header, "id", str, what)
    rate = _field(header, "rate", int, what)
    if rate <= 0 or SAMPLE_RATE % rate or data[:4] == WORK_MAGIC_V1 and rate != SAMPLE_RATE:
        raise WireFormatError(what, f"sample rate {rate} (this worker takes {SAMPLE_RATE} and "
                              f"rates that divide it)", field="rate")
    context = header.get("ctx") if data[:4] == WORK_MAGIC else None
    if context is not None and not (
            isinstance(context, list) and len(context) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= _MAX_CONTEXT
                    for n in context)):
        raise WireFormatError(what, f"not [before, after] sample counts up to {_MAX_CONTEXT}: "
                              f"{context!r}", field="ctx")
    try:
        speaker = Speaker(_field(header, "ch", str, what))
    except ValueError as exc:
        raise WireFormatError(what, f"unknown channel {header['ch']!r}", field="ch") from exc
    language = header.get("lang")
    if language is not None and not isinstance(language, str):
        raise WireFormatError(what, "not a string or null", field="lang")
    body = data[8 + size:]
    if len(body) % 2:
        raise WireFormatError(what, f"odd PCM length {len(body)}", field="pcm")
    start, end = _field(header, "s0", int, what), _field(header, "s1", int, what)
    call_id, index = _field(header, "call", str, what), _field(header, "i", int, what)
    samples = np.frombuffer(body, dtype="<i2").astype(np.int16)
    samples.flags.writeable = False
    n_before, n_after = context or (0, 0)
    if n_before + n_after > len(samples):
        raise WireFormatError(what, f"{n_before} + {n_after} context samples but "
                              f"{len(samples)} in all", field="ctx")
    pcm = samples[n_before:len(samples) - n_after]
    try:
        utterance = Utterance(
            call_id=call_id, speaker=speaker, start_sample=start, end_sample=end, pcm=pcm,
            index=index, forced_split=bool(header.get("split", False)), sample_rate=rate,
            context=(samples[:n_before], samples[len(samples) - n_after:])
            if context is not None else None,
        )
    except ValueError as exc:
        raise WireFormatError(what, str(exc), field="pcm") from exc
    return Work(utterance_id, utterance, language, _field(header, "reply", str, what))


def encode_result(result: Result) -> bytes:
    """The bytes of a result message (see the module docstring)."""
    body = {
        "id": result.utterance_id,
        "segments": [{
            "call": s.call_id, "ch": str(s.speaker), "start": s.start, "end": s.end,
            "text": s.text, "words": [[w.start, w.end, w.text, w.probability] for w in s.words],
            "final": s.final, "lang": s.language, "logprob": s.avg_logprob,
            "nospeech": s.no_speech_prob,
        } for s in result.segments],
        "error": result.error,
        "worker": result.worker,
        "decode_s": round(result.decode_seconds, 4),
    }
    return RESULT_MAGIC + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def decode_result(data: bytes) -> Result:
    """Parses a result message.

    Raises:
        WireFormatError: not a result message of this version, or a field is missing or wrong.
    """
    what = "result message"
    if data[:4] != RESULT_MAGIC:
        raise WireFormatError(what, f"unknown magic/version {data[:4]!r} (want "
                              f"{RESULT_MAGIC!r})")
    try:
        body = json.loads(data[4:])
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireFormatError(what, f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise WireFormatError(what, "not a JSON object")
    raw = _field(body, "segments", list, what)
    segments = []
    try:
        for item in raw:
            segments.append(Segment(
                call_id=item["call"], speaker=Speaker(item["ch"]), start=float(item["start"]),
                end=float(item["end"]), text=str(item["text"]),
                words=tuple(Word(float(a), float(b), str(t), float(p))
                            for a, b, t, p in item.get("words", ())),
                final=bool(item.get("final", True)), language=str(item.get("lang", "")),
                avg_logprob=float(item.get("logprob", 0.0)),
                no_speech_prob=float(item.get("nospeech", 0.0)),
            ))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(what, f"bad segment {len(segments)}: {exc!r}",
                              field="segments") from exc
    return Result(
        utterance_id=_field(body, "id", str, what), segments=tuple(segments),
        error=str(body.get("error") or ""), worker=str(body.get("worker") or ""),
        decode_seconds=float(body.get("decode_s") or 0.0),
    )
