"""Call recordings: each call's audio kept, agent left and customer right, compressed,
owner-only, with everything the transcript redacts masked by a tone.

How a call is recorded:

1. `Monitor` wraps the pipeline in a `RecordingSink`, which hands every chunk to
   `Recorder.write` before the pipeline sees it. `write` copies nothing and allocates
   nothing: it `pwrite`s the chunk's samples, at the source's own rate, straight into that
   channel's spool file at the offset of its first sample (a gap left by lost packets reads
   back as silence). It runs in the source's thread, never in a capture callback (the sound
   card's callback only fills the native ring buffer), and a failing disk only marks the
   call's recording as failed: the call goes on.
2. The recorder is also a pipeline listener. Each final segment says which times the
   transcript redacts (`mask_spans`): the redacted words with a guard margin when the
   recogniser gave word times, else the whole segment (safe before narrow). Key presses the
   source reports (RFC 4733) are masked too.
3. The call's summary (after its last segment) hands the call to one background thread,
   which masks those spans with a 1 kHz tone on the channel that spoke them, encodes the
   file, renames it atomically into `<directory>/YYYY/MM/DD/<call_id>.flac` (0600 files,
   0700 folders) and records it in the call store. Calls a stop interrupted keep what was
   recorded. A call whose recording fails is logged and counted
   (`qa_recording_failures_total`); its spool files are removed, never left unmasked.

The codec goes through PyAV, the FFmpeg binding that faster-whisper already depends on (its
wheels carry FFmpeg's FLAC encoder and libopus): no new dependency, no subprocess per call, and
both codecs maintained upstream. FLAC is the default: lossless, so the mask is exactly what was
computed and a reviewer hears the call as captured, at about half the size of PCM; Opus is
about ten times smaller and costs ten times more CPU to encode.

Retention (`prune`): calls that started more than `retention_days` ago are deleted with their
recording (`CallStore.delete_call` keeps the append-only audit trails), and dated folders past
retention are swept of files the store does not know (a store that was failing when the file
was written).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.db import is_url
from qa.errors import CallNotFoundError, ConfigError, StoreError
from qa.metrics import RECORDING_FAILURE_STAGES as FAILURE_STAGES
from qa.redact import redact, redact_words
from qa.sources.base import SourceSink
from qa.types import (
    AudioChunk,
    CallInfo,
    CallSummary,
    MaskedSpan,
    PipelineListener,
    Recording,
    Segment,
    Speaker,
)

__all__ = [
    "CODECS",
    "PruneResult",
    "Recorder",
    "RecordingOptions",
    "RecordingSink",
    "default_directory",
    "mask_spans",
    "prune",
]

log = logging.getLogger("qa.recordings")

#: Codec name to (PyAV encoder, container format, file suffix).
CODECS = {"flac": ("flac", "flac", ".flac"), "opus": ("libopus", "ogg", ".opus")}
#: Rates libopus takes as they are; others are resampled to 48 kHz.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
#: Bytes per sample in the spool files (int16).
_SAMPLE_BYTES = 2
#: Seconds encoded per block at call end, so a long call never sits whole in memory.
_BLOCK_S = 10.0
#: Channel order in the file: agent left, customer right (DESIGN.md "Channels").
_ORDER = (Speaker.AGENT, Speaker.CUSTOMER, Speaker.UNKNOWN)
#: Placeholder words `redact_words` writes over a redacted run.
_PLACEHOLDER = re.compile(r"\[(PHONE|ID|CARD|EMAIL|NUMBER|DATE)\]")
#: Characters a call id may keep in a file name; others become '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class RecordingOptions:
    """Whether and how calls are recorded.

    Attributes:
        enabled: Keep each call's audio (on by default).
        directory: Where recordings go; None puts them in `recordings/` beside the call
            store (`default_directory`).
        retention_days: Calls older than this are deleted with their recordings by
            `qa recordings prune` and at every `qa run` start; 0 keeps them for ever.
        codec: `flac` (lossless, the default) or `opus` (about ten times smaller).
        guard_s: Seconds added before and after each redacted word when masking: word times
            from the recogniser are off by a word's edge now and then (0.25 s covers it).
        tone_hz: Frequency of the masking tone (1 kHz, the classic bleep).
        tone_dbfs: Level of the tone (-20 dBFS: clearly heard, well below clipping).
        opus_bitrate: Bits per second of an Opus file (32 kb/s: transparent for speech in
            two channels).
    """

    enabled: bool = True
    directory: Path | None = None
    retention_days: int = 90
    codec: str = "flac"
    guard_s: float = 0.25
    tone_hz: float = 1000.0
    tone_dbfs: float = -20.0
    opus_bitrate: int = 32_000

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError("recording options", f"codec must be one of "
                              f"{', '.join(CODECS)}, not {self.codec!r}", field="codec")
        if self.retention_days < 0:
            raise ConfigError("recording options", "retention_days must be 0 (keep for ever) "
                              "or more", field="retention_days")
        if self.guard_s < 0:
            raise ConfigError("recording options", "guard_s must be 0 or more",
                              field="guard_s")


def default_directory(store_path: Path | str | None) -> Path:
    """`recordings/` beside the call store; for a PostgreSQL store (a URL) or none, beside
    the default store path, on this node (recordings are files on the capturing machine)."""
    from qa.store import data_dir, default_db_path

    store_path = default_db_path() if store_path is None else store_path
    if isinstance(store_path, str) and is_url(store_path):
        return data_dir() / "recordings"
    return Path(store_path).expanduser().parent / "recordings"


def mask_spans(segment: Segment, guard: float) -> list[MaskedSpan]:
    """The times of `segment` whose audio must be masked: what the transcript redacts.

    With word times, each redacted run of words (`redact_words`' placeholder words) widened
    by `guard`; without them (the default batched decoding gives none), or when the words do
    not spell the redacted text, the whole segment: a number is never left audible because
    its words could not be placed.

    Args:
        segment: A final segment.
        guard: Seconds added on both sides.

    Returns:
        The spans on the segment's channel, in time order (empty when nothing is redacted).
    """
    language = segment.language or None
    found = redact(segment.text, language).spans
    if not found:
        return []
    spans = []
    for word in redact_words(segment.words, segment.text, language):
        hit = _PLACEHOLDER.search(word.text)
        if hit is not None:
            spans.append(MaskedSpan(segment.speaker, max(0.0, word.start - guard),
                                    word.end + guard, hit.group(1)))
    if len(spans) < len(found):  # some redacted text has no word to place it: all of it
        kinds = "+".join(sorted({s.kind for s in found}))
        return [MaskedSpan(segment.speaker, max(0.0, segment.start - guard),
                           segment.end + guard, kinds)]
    return spans


def _merge(spans: Iterable[MaskedSpan]) -> list[MaskedSpan]:
    """Overlapping spans of one channel joined, in time order."""
    out: list[MaskedSpan] = []
    for span in sorted(spans, key=lambda s: (_ORDER.index(s.channel), s.start)):
        last = out[-1] if out else None
        if last is not None and last.channel == span.channel and span.start <= last.end:
            kinds = "+".join(sorted(set(last.kind.split("+")) | set(span.kind.split("+"))))
            out[-1] = MaskedSpan(last.channel, last.start, max(last.end, span.end), kinds)
        else:
            out.append(span)
    return sorted(out, key=lambda s: (s.start, _ORDER.index(s.channel)))


class _Capture:
    """One call being recorded: a spool file per channel."""

    __slots__ = ("info", "stem", "fds", "paths", "frames", "lock", "closed", "failed", "spans")

    def __init__(self, info: CallInfo, pid: int | None = None) -> None:
        self.info = info
        self.stem = f"{_UNSAFE.sub('_', info.call_id)}.{os.getpid() if pid is None else pid}"
        self.fds: dict[Speaker, int] = {}
        self.paths: dict[Speaker, Path] = {}
        self.frames: dict[Speaker, int] = {}  # samples written through, per channel
        self.lock = threading.Lock()  # the source writes, the finisher closes
        self.closed = False
        self.failed = False
        self.spans: list[MaskedSpan] = []

    def save(self, path: Path) -> None:
        """Writes what finishing needs (the call, its spool files' lengths, the masks) to
        `path`, owner-only and atomically."""
        info = self.info
        data = {
            "call_id": info.call_id, "agent_id": info.agent_id, "source": info.source,
            "started_at": info.started_at, "sample_rate": info.sample_rate,
            "channels": [str(c) for c in info.channels],
            "spool": {str(c): [str(p), self.frames.get(c, 0)] for c, p in self.paths.items()},
            "spans": [[str(m.channel), m.start, m.end, m.kind] for m in self.spans],
        }
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> _Capture:
        """The ended call `save` wrote (its spool files closed)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        info = CallInfo(data["call_id"], data["agent_id"], data["source"],
                        float(data["started_at"]), tuple(Speaker(c) for c in data["channels"]),
                        int(data["sample_rate"]))
        capture = cls(info, pid=_pid_of(path))
        for channel, (spool, frames) in data["spool"].items():
            capture.paths[Speaker(channel)] = Path(spool)
            capture.frames[Speaker(channel)] = int(frames)
        capture.spans = [MaskedSpan(Speaker(c), float(a), float(b), str(k))
                         for c, a, b, k in data["spans"]]
        capture.closed = True
        return capture


def _pid_of(path: Path) -> int:
    """The process id in a spool file's name (`<call>.<pid>.<channel>.s16`,
    `<call>.<pid>.ended`), 0 when there is none."""
    parts = path.name.split(".")
    index = -3 if path.suffix == ".s16" else -2
    return int(parts[index]) if len(parts) >= -index + 1 and parts[index].isdigit() else 0


class Recorder(PipelineListener):
    """Records every call it is fed (see the module docstring).

    Use with `RecordingSink` for the audio and as a pipeline listener for the transcript;
    `close` waits for the recordings still being written.

    Args:
        options: What to record and how.
        directory: Where the files go (resolved by the caller; created 0700 if missing).
        store: The call store that learns each file's path (None: files only).

    Attributes:
        written: Recordings written (read by the metrics at scrape time).
        failures: Failed recordings by stage (`capture`, `encode`, `store`, `prune`).
    """

    def __init__(self, options: RecordingOptions, directory: Path, store=None) -> None:
        self.options = options
        self.directory = Path(directory).expanduser().absolute()
        self.store = store
        self.written = 0
        self.failures = dict.fromkeys(FAILURE_STAGES, 0)
        self._calls: dict[str, _Capture] = {}
        self._lock = threading.Lock()
        self._jobs: queue.Queue[tuple[_Capture, str] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._busy = 0
        self._partial = self.directory / ".partial"
        self._thread = threading.Thread(target=self._finisher, name="qa-recordings",
                                        daemon=True)
        self._thread.start()
        self._recover()

    def _recover(self) -> None:
        """Finishes, or drops, what processes that are gone left in the spool folder.

        A call that had ended (its transcript complete, so its masks known: the `.ended`
        file written at call end) is finished now, as a stop that ran out of time leaves it.
        A call whose process died before the call ended is dropped: its spool files hold the
        audio unmasked and nothing says what to mask, so they are never kept or encoded.
        """
        if not self._partial.is_dir():
            return
        ended: set[Path] = set()
        for marker in sorted(self._partial.glob("*.ended")):
            if _alive(_pid_of(marker)):
                continue  # another process recording into the same folder
            try:
                capture = _Capture.load(marker)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("cannot read %s (%s): its call's recording is dropped", marker, exc)
                marker.unlink(missing_ok=True)
                continue
            ended.update(capture.paths.values())
            log.warning("finishing the recording of call %s, left by a process that stopped "
                        "before it was written", capture.info.call_id)
            self._queue(capture, "recovered")
        for path in self._partial.glob("*.ended.tmp"):  # a save cut short
            if not _alive(_pid_of(path.with_suffix(""))):
                path.unlink(missing_ok=True)
        for path in self._partial.glob("*.s16"):
            if path in ended or _alive(_pid_of(path)):
                continue
            log.warning("dropping %s: the unmasked audio of a call whose process died "
                        "before the call ended", path.name)
            path.unlink(missing_ok=True)

    # -- capture (source threads) -------------------------------------------------------------

    def open(self, call: CallInfo) -> None:
        """Starts recording a call: one owner-only spool file per channel. A failure is
        logged and counted; the call goes on unrecorded."""
        capture = _Capture(call)
        try:
            _private_dirs(self.directory, self._partial)
            for speaker in call.channels:
                path = self._partial / f"{capture.stem}.{speaker}.s16"
                capture.paths[speaker] = path
                capture.fds[speaker] = os.open(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600)
                capture.frames[speaker] = 0
        except OSError as exc:
            self._failed(capture, "capture", exc)
        with self._lock:
            self._calls[call.call_id] = capture

    def write(self, chunk: AudioChunk) -> None:
        """Writes one chunk at its place in its channel's spool file; never raises."""
        capture = self._calls.get(chunk.call_id)
        if capture is None or capture.failed:
            return
        fd = capture.fds.get(chunk.channel)
        if fd is None:
            return
        if chunk.sample_rate != capture.info.sample_rate:
            self._failed(capture, "capture", ValueError(
                f"a {chunk.sample_rate} Hz chunk in a {capture.info.sample_rate} Hz call"))
            return
        with capture.lock:
            if capture.closed:
                return
            try:
                # The chunk's own buffer goes to the kernel: no copy, no allocation.
                # (an ndarray is a buffer; numpy's stubs do not say so to this Python's typeshed)
                os.pwrite(fd, chunk.pcm,  # type: ignore[arg-type]
                          chunk.first_sample * _SAMPLE_BYTES)
            except OSError as exc:
                capture.failed = True
                failure = exc
            else:
                end = chunk.first_sample + len(chunk.pcm)
                if end > capture.frames[chunk.channel]:
                    capture.frames[chunk.channel] = end
                return
        self._failed(capture, "capture", failure)

    def key_press(self, call_id: str, channel: Speaker, time: float, duration: float) -> None:
        """Masks a key press: during identity checks keys are PINs and card numbers, and an
        in-band tone left in the audio can be decoded back into the digit."""
        capture = self._calls.get(call_id)
        if capture is not None:
            guard = self.options.guard_s
            capture.spans.append(MaskedSpan(channel, max(0.0, time - guard),
                                            time + duration + guard, "DTMF"))

    # -- the transcript (the pipeline's dispatcher) -------------------------------------------

    def segment(self, segment: Segment, latency: float) -> None:
        capture = self._calls.get(segment.call_id)
        if capture is not None:
            capture.spans.extend(mask_spans(segment, self.options.guard_s))

    def call_ended(self, summary: CallSummary) -> None:
        with self._lock:
            capture = self._calls.pop(summary.call_id, None)
        if capture is None:
            return
        if not capture.failed:
            try:
                # What a later start needs to finish this call if this process stops first.
                capture.save(self._partial / f"{capture.stem}.ended")
            except OSError as exc:
                log.warning("call %s: cannot write %s/%s.ended (%s); its recording is lost if "
                            "the process stops before it is written", summary.call_id,
                            self._partial, capture.stem, exc)
        self._queue(capture, summary.reason)

    def _queue(self, capture: _Capture, reason: str) -> None:
        with self._idle:
            self._busy += 1
        self._jobs.put((capture, reason))

    # -- finishing (the recorder's thread) ----------------------------------------------------

    def _finisher(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            capture, reason = job
            try:
                self._finish(capture, reason)
            except Exception:  # one bad call must not stop the recordings of others
                log.exception("recording of call %s failed", capture.info.call_id)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _finish(self, capture: _Capture, reason: str) -> None:
        with capture.lock:
            capture.closed = True
            for fd in capture.fds.values():
                os.close(fd)
        call_id = capture.info.call_id
        try:
            if capture.failed:
                return
            if not any(capture.frames.values()):
                log.info("call %s: no audio to record", call_id)
                return
            try:
                recording = self._encode(capture)
            except Exception as exc:
                self._failed(capture, "encode", exc)
                return
            self.written += 1
            log.info("call %s (%s) recorded: %s, %.1f s, %d masked spans", call_id, reason,
                     recording.path, recording.duration, len(recording.masked_spans))
            if self.store is not None:
                try:
                    self.store.add_recording(recording)
                except (StoreError, CallNotFoundError) as exc:
                    # The file stays: the dated-folder sweep of `prune` removes it in time.
                    self._failed(capture, "store", exc)
        finally:
            for path in (*capture.paths.values(), self._partial / f"{capture.stem}.ended"):
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.error("call %s: cannot remove spool file %s: %s", call_id, path, exc)

    def _encode(self, capture: _Capture) -> Recording:
        info = capture.info
        rate = info.sample_rate
        channels = [s for s in _ORDER if s in capture.paths]
        frames = max(capture.frames.values())
        spans = _merge(capture.spans)
        _, _, suffix = CODECS[self.options.codec]
        day = datetime.datetime.fromtimestamp(info.started_at, datetime.UTC)
        folder = self.directory / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        _private_dirs(self.directory, folder.parent.parent, folder.parent, folder)
        final = folder / f"{_UNSAFE.sub('_', info.call_id)}{suffix}"
        temporary = folder / f".{final.name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                sources = [_spool_view(capture.paths[s], frames) for s in channels]
                _encode_file(handle, sources, channels, frames, rate, spans, self.options)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return Recording(
            call_id=info.call_id, path=str(final), codec=self.options.codec,
            sample_rate=rate, channels=len(channels), duration=frames / rate,
            bytes=final.stat().st_size, masked_spans=tuple(spans), created_at=time.time(),
        )

    def _failed(self, capture: _Capture, stage: str, exc: BaseException) -> None:
        capture.failed = True
        self.failures[stage] += 1
        log.error("recording of call %s failed (%s): %s; the call goes on unrecorded "
                  "(counted in qa_recording_failures_total)", capture.info.call_id, stage, exc)

    # -- lifecycle ----------------------------------------------------------------------------

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until every ended call's recording is written; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Finishes the recordings of ended calls (at most `timeout` seconds), then stops.
        Calls that never ended are dropped with their spool files; ended calls not written
        in time are finished by the next recorder started on this folder.

        Returns:
            True when everything was written in time.
        """
        done = self.wait_idle(timeout)
        self._jobs.put(None)
        if done:
            self._thread.join(timeout)
        else:
            log.warning("%d recordings not written in time; the next start on %s finishes "
                        "them", self._busy, self.directory)
        with self._lock:
            left, self._calls = list(self._calls.values()), {}
        for capture in left:
            log.warning("call %s never ended: its recording is dropped", capture.info.call_id)
            with capture.lock:
                capture.closed = True
                for fd in capture.fds.values():
                    os.close(fd)
            for path in capture.paths.values():
                path.unlink(missing_ok=True)
        return done


class RecordingSink:
    """A `SourceSink` that tees each call's audio to a `Recorder` and passes everything on.

    Args:
        sink: The pipeline.
        recorder: Where the audio is also written.
    """

    def __init__(self, sink: SourceSink, recorder: Recorder) -> None:
        self._sink = sink
        self._recorder = recorder

    def call_started(self, call: CallInfo) -> None:
        self._sink.call_started(call)  # refuses a duplicate id before anything is recorded
        self._recorder.open(call)

    def audio(self, chunk: AudioChunk) -> None:
        self._recorder.write(chunk)
        self._sink.audio(chunk)

    def dtmf(
        self, call_id: str, channel: Speaker, digit: str, time: float, duration: float
    ) -> None:
        self._recorder.key_press(call_id, channel, time, duration)
        self._sink.dtmf(call_id, channel, digit, time, duration)

    def call_ended(self, call_id: str, reason: str) -> None:
        self._sink.call_ended(call_id, reason)


# -- encoding -------------------------------------------------------------------------------


def _spool_view(path: Path, frames: int) -> np.ndarray:
    """A channel's spool file as int16 samples (memory-mapped; empty when nothing was
    written). Samples past its end, up to `frames`, are silence."""
    size = path.stat().st_size // _SAMPLE_BYTES
    if size == 0:
        return np.zeros(0, np.int16)
    return np.memmap(path, np.int16, "r", shape=(min(size, frames),))


def _encode_file(handle, sources: list[np.ndarray], channels: list[Speaker], frames: int,
                 rate: int, spans: list[MaskedSpan], options: RecordingOptions) -> None:
    """Encodes the channels, masked, into `handle`, a block at a time."""
    import av

    encoder, container_format, _ = CODECS[options.codec]
    layout = "stereo" if len(channels) == 2 else "mono"
    out_rate = rate
    if options.codec == "opus" and rate not in _OPUS_RATES:
        out_rate = 48_000
    amplitude = 32767.0 * 10 ** (options.tone_dbfs / 20.0)
    block = max(1, int(_BLOCK_S * rate))
    with av.open(handle, "w", format=container_format) as container:
        stream: Any = container.add_stream(encoder, rate=out_rate, layout=layout)  # audio
        stream.format = "s16"
        if options.codec == "opus":
            stream.bit_rate = options.opus_bitrate
        resampler = (av.AudioResampler(format="s16", layout=layout, rate=out_rate)
                     if out_rate != rate else None)
        for start in range(0, frames, block):
            count = min(block, frames - start)
            pcm = np.zeros((count, len(channels)), np.int16)
            for column, (speaker, source) in enumerate(zip(channels, sources, strict=True)):
                have = max(0, min(len(source), start + count) - start)
                if have:
                    pcm[:have, column] = source[start : start + have]
                for span in spans:
                    if span.channel == speaker:
                        _tone(pcm[:, column], start, rate, span, options.tone_hz, amplitude)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = _fraction(rate)
            for piece in resampler.resample(frame) if resampler else (frame,):
                for packet in stream.encode(piece):
                    container.mux(packet)
        if resampler is not None:
            for piece in resampler.resample(None):
                for packet in stream.encode(piece):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _fraction(rate: int):
    from fractions import Fraction

    return Fraction(1, rate)


def _tone(column: np.ndarray, offset: int, rate: int, span: MaskedSpan, hz: float,
          amplitude: float) -> None:
    """Overwrites the part of `span` inside this block (which starts at sample `offset`)
    with a sine, its phase counted from the call's first sample so blocks join smoothly."""
    first = max(offset, int(math.floor(span.start * rate)))
    last = min(offset + len(column), int(math.ceil(span.end * rate)))
    if first >= last:
        return
    n = np.arange(first, last, dtype=np.float64)
    column[first - offset : last - offset] = np.round(
        amplitude * np.sin(2.0 * math.pi * hz * n / rate)).astype(np.int16)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return True


# -- folders, retention ----------------------------------------------------------------------


def _private_dirs(*paths: Path) -> None:
    """Creates each folder owner-only (0700), tightening one that is looser."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise NotADirectoryError(f"{path} is not a folder")
        if stat.S_IMODE(info.st_mode) & 0o077:
            log.warning("tightening permissions of %s from %o to 700", path,
                        stat.S_IMODE(info.st_mode))
            os.chmod(path, 0o700)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a retention sweep removed.

    Attributes:
        calls: Calls deleted from the store (or purged to a bare row kept by an audit trail).
        files: Recording files deleted (the store's and stray ones in expired folders).
        bytes: Their total size.
        failed: Calls or files that could not be removed (logged; tried again next sweep).
    """

    calls: int = 0
    files: int = 0
    bytes: int = 0
    failed: int = 0


def prune(store, directory: Path | None, retention_days: int,
          now: float | None = None, recorder: Recorder | None = None) -> PruneResult:
    """Deletes calls that started more than `retention_days` ago, with their recordings.

    Each expired call's file is deleted first, then the call (`CallStore.delete_call`, which
    keeps the audit trails); a file that cannot be deleted keeps its call for the next sweep.
    Then day folders under `directory` that are wholly past retention are emptied of
    recordings the store did not know and removed.

    Args:
        store: The call store (None: only the folder sweep).
        directory: The recordings folder (None: no folder sweep).
        retention_days: 0 keeps everything (nothing is done).
        now: The current time (epoch seconds; tests).
        recorder: Counts failures in its metrics when given.

    Returns:
        What was removed.
    """
    if retention_days <= 0:
        return PruneResult()
    now = time.time() if now is None else now
    cutoff = now - retention_days * 86400.0
    calls = files = size = failed = 0

    def fail(what: str, exc: BaseException) -> None:
        nonlocal failed
        failed += 1
        if recorder is not None:
            recorder.failures["prune"] += 1
        log.error("retention: %s: %s (tried again at the next sweep)", what, exc)

    if store is not None:
        for call_id in store.expired_calls(cutoff):
            recording = store.recording(call_id)
            if recording is not None:
                path = Path(recording.path)
                try:
                    removed = path.stat().st_size
                    path.unlink()
                    files += 1
                    size += removed
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    fail(f"cannot delete {path}", exc)
                    continue
            try:
                store.delete_call(call_id)
                calls += 1
            except (StoreError, CallNotFoundError) as exc:
                fail(f"cannot delete call {call_id}", exc)
    if directory is not None and Path(directory).is_dir():
        stray_files, stray_bytes = _sweep_days(Path(directory), cutoff, fail)
        files += stray_files
        size += stray_bytes
    if calls or files:
        log.info("retention (%d days): deleted %d calls and %d recordings (%d bytes)",
                 retention_days, calls, files, size)
    return PruneResult(calls, files, size, failed)


def _sweep_days(directory: Path, cutoff: float, fail) -> tuple[int, int]:
    """Removes recordings in `YYYY/MM/DD` folders whose whole day ended before `cutoff`
    (a day folder is named by the UTC start date of its calls)."""
    suffixes = {suffix for _, _, suffix in CODECS.values()}
    files = size = 0
    for day in sorted(directory.glob("[0-9][0-9][0-9][0-9]/[0-1][0-9]/[0-3][0-9]")):
        try:
            date = datetime.datetime.strptime("/".join(day.parts[-3:]), "%Y/%m/%d").replace(
                tzinfo=datetime.UTC)
        except ValueError:
            continue
        if (date + datetime.timedelta(days=1)).timestamp() > cutoff:
            continue
        for path in day.iterdir():
            if path.suffix in suffixes or path.name.endswith(".tmp"):
                try:
                    removed = path.lstat().st_size
                    path.unlink()
                    files += 1
                    size += removed
                except OSError as exc:
                    fail(f"cannot delete {path}", exc)
        for folder in (day, day.parent, day.parent.parent):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
    return files, size

