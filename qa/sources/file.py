"""WAV replay: a recorded call played into the pipeline, in real time or as fast as it goes.

A stereo file is a two-channel call (left = agent, right = customer); a mono file yields
speaker `unknown`. In real time the audio clock is paced by the wall clock, as a live call
would be; otherwise the clock advances as fast as the pipeline takes chunks, and the rules
fire exactly as they would live because they run on the audio clock only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qa.ids import new_call_id
from qa.sources.audio import open_audio
from qa.sources.base import SourceSink
from qa.sources.wav import iter_chunks
from qa.types import CallInfo, channel_speakers

log = logging.getLogger("qa.sources.file")


@dataclass(frozen=True)
class FileOptions:
    """A WAV replay.

    Attributes:
        path: The recording: WAV (PCM, float, G.711), FLAC, Ogg/Opus, MP3, M4A, ...;
            any rate from 8 to 48 kHz, mono or stereo.
        realtime: Pace chunks by the wall clock (a live call) instead of as fast as possible.
        chunk_ms: Milliseconds of audio per chunk, as a sound card would deliver it.
        agent_id: The agent to record on the call.
        call_id: The call id; default: `file-<stem>-<UUIDv7>` (`qa.ids.new_call_id`).
    """

    path: Path
    realtime: bool = False
    chunk_ms: int = 20
    agent_id: str = ""
    call_id: str = ""


class FileSource:
    """Replays one recording as one call (implements `qa.sources.base.Source`)."""

    def __init__(self, options: FileOptions) -> None:
        self.options = options
        # The header is checked here, so a bad file is reported before anything starts;
        # the samples are read while the call plays.
        self._wav = open_audio(options.path)
        self.call_id = options.call_id or new_call_id(f"file-{Path(options.path).stem}")
        self.name = f"file:{options.path}"
        self._chunks = 0
        self._frames = 0

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Plays the file as one call; ends it with `end of file` or `stopped`."""
        channels = channel_speakers(self._wav.channels)
        sink.call_started(
            CallInfo(
                call_id=self.call_id,
                agent_id=self.options.agent_id,
                source=self.name,
                started_at=time.time(),
                channels=channels,
                sample_rate=self._wav.sample_rate,
            )
        )
        started = time.monotonic()
        reason = "end of file"
        for chunk in iter_chunks(self._wav, self.call_id, chunk_ms=self.options.chunk_ms):
            if stop.is_set():
                reason = "stopped"
                break
            if self.options.realtime:
                # Release a chunk once its audio has "happened", as a sound card would.
                due = started + chunk.end
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    reason = "stopped"
                    break
            sink.audio(chunk)
            self._chunks += 1
            self._frames += len(chunk.pcm)
        sink.call_ended(self.call_id, reason)

    def stats(self) -> Mapping[str, int]:
        """Chunks and samples delivered so far."""
        return {"chunks": self._chunks, "samples": self._frames}
