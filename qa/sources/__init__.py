"""Audio sources: each produces `AudioChunk`s and knows nothing of VAD, ASR or rules."""

from qa.sources.audio import AudioStream, open_audio, read_audio
from qa.sources.base import CallInfo, Source, SourceSink
from qa.sources.wav import WavFile, channel_speakers, iter_chunks, read_wav

__all__ = [
    "AudioStream",
    "CallInfo",
    "Source",
    "SourceSink",
    "WavFile",
    "channel_speakers",
    "iter_chunks",
    "open_audio",
    "read_audio",
    "read_wav",
]
