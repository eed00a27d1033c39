"""The one-shot file path: a whole recording cut and transcribed the way a live call is.

`cut_file` feeds each channel through its own `qa.frontend.ChannelFrontEnd` in 20 ms chunks,
as a live source delivers them, so a replayed call cuts exactly the utterances the live
call cut; `transcribe_file` sends those utterances through a transcriber one by one. Live
calls take the other path (`qa.pipeline`): the same front end, a shared queue of workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from qa.frontend import ChannelFrontEnd, FrontEndOptions
from qa.types import Segment, Speaker, Utterance

if TYPE_CHECKING:
    from qa.asr import Transcriber
    from qa.sources.audio import AudioStream
    from qa.sources.wav import WavFile


def cut_file(wav, call_id: str, options: FrontEndOptions | None = None) -> list[Utterance]:
    """Cuts a whole recording into utterances exactly as a live call is cut.

    Each channel goes through its own `ChannelFrontEnd` in 20 ms chunks (stereo: left =
    agent, right = customer).

    Args:
        wav: A `qa.sources.wav.WavFile` (or a stream from `qa.sources.audio.open_audio`).
        call_id: The call id the utterances carry.
        options: Front-end options (None: the defaults).

    Returns:
        Every channel's utterances, each channel's in order, channels one after the other.
    """
    from qa.sources.wav import channel_speakers, iter_chunks

    options = options or FrontEndOptions()
    fronts = {
        speaker: ChannelFrontEnd(call_id, speaker, wav.sample_rate, options)
        for speaker in channel_speakers(wav.channels)
    }
    cut: dict[Speaker, list[Utterance]] = {speaker: [] for speaker in fronts}
    for chunk in iter_chunks(wav, call_id, chunk_ms=20):
        cut[chunk.channel] += fronts[chunk.channel].push(chunk)
    for speaker, front in fronts.items():
        cut[speaker] += front.flush()
    return [utterance for utterances in cut.values() for utterance in utterances]


def transcribe_file(
    source: str | os.PathLike[str] | WavFile | AudioStream,
    transcriber: Transcriber,
    *,
    language: str | None = None,
    call_id: str | None = None,
    frontend_options: FrontEndOptions | None = None,
) -> list[Segment]:
    """Transcribes a recording the way a live call is transcribed.

    Each channel goes through its own `ChannelFrontEnd` in 20 ms chunks (stereo: left =
    agent, right = customer), and each utterance it cuts through `transcriber`.

    Args:
        source: A recording's path (see `qa.sources.audio.open_audio`), an open stream or an
            already read `WavFile`.
        transcriber: The loaded model.
        language: `en`, `zh`, or None to detect per utterance.
        call_id: Call id for the segments; default the file's stem.
        frontend_options: Front-end options, or None for the defaults.

    Returns:
        Segments of both channels, sorted by start time.
    """
    from qa.sources.audio import open_audio

    # A path is streamed (any format); a WavFile or an open stream is used as it is.
    wav = open_audio(source) if isinstance(source, (str, os.PathLike)) else source
    utterances = cut_file(wav, call_id or Path(wav.path).stem, frontend_options)
    segments = [s for u in utterances for s in transcriber.transcribe(u, language)]
    return sorted(segments, key=lambda s: (s.start, s.speaker))
