"""Audio sources: each produces `AudioChunk`s and knows nothing of VAD, ASR or rules."""

from qa.sources.base import CallInfo, Source, SourceSink
from qa.sources.wav import WavFile, channel_speakers, iter_chunks, read_wav

__all__ = [
    "CallInfo",
    "Source",
    "SourceSink",
    "WavFile",
    "channel_speakers",
    "iter_chunks",
    "read_wav",
]
