"""One websocket media connection as a call: the protocol state machines, without sockets.

Each session takes the connection's messages (`text`, `binary`, `closed`) and returns the
replies to send; it reports its call through a `CallWriter`, which keeps each channel one
gapless run of samples from the call's sample 0 (gaps become silence, overlaps are cut).
A message that breaks the protocol raises `SignallingError`; the server counts it and the
session goes on, unless `failed` is set (nothing more can be understood on this connection).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

import numpy as np

from qa._native import g711
from qa.errors import SignallingError
from qa.sources.base import SourceSink
from qa.sources.wsmedia import formats
from qa.types import AudioChunk, CallInfo, Speaker


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session needs from its server.

    Attributes:
        sink: Where calls go.
        new_call_id: Makes the call's id (the server's one place for that).
        source: The description calls carry (`ws://HOST:PORT/twilio`).
        agent_id: The agent when the stream does not name one.
        agent_parameter: The name of the stream parameter (Twilio `<Parameter>`, AudioHook
            input variable, FreeSWITCH metadata key) that carries the agent id.
        counters: The server's counters, bumped in place.
    """

    sink: SourceSink
    new_call_id: Callable[[str], str]
    source: str
    agent_id: str
    agent_parameter: str
    counters: MutableMapping[str, int]


class CallWriter:
    """Puts one call's audio on the call clock, channel by channel."""

    def __init__(self, context: SessionContext, kind: str, agent_id: str,
                 channels: tuple[Speaker, ...], rate: int) -> None:
        self.context = context
        self.call_id = context.new_call_id(kind)
        self.rate = rate
        self.next_sample = dict.fromkeys(channels, 0)
        self.ended = False
        context.counters["calls"] += 1
        context.sink.call_started(CallInfo(self.call_id, agent_id, context.source, time.time(),
                                           channels, rate))

    def write(self, speaker: Speaker, pcm: np.ndarray, position: int | None = None) -> None:
        """Adds `pcm` to `speaker`'s channel at `position` (None = right after what it has)."""
        if self.ended or speaker not in self.next_sample or not len(pcm):
            return
        start = self.next_sample[speaker]
        if position is None:
            position = start
        if position < start:  # overlaps what was delivered: keep only the new part
            pcm = pcm[start - position :]
            position = start
            if not len(pcm):
                return
        elif position > start:
            self.context.counters["filled_samples"] += position - start
            self.context.sink.audio(AudioChunk(self.call_id, speaker,
                                               np.zeros(position - start, np.int16),
                                               self.rate, start))
        self.context.sink.audio(AudioChunk(self.call_id, speaker, pcm, self.rate, position))
        self.next_sample[speaker] = position + len(pcm)

    def skip(self, samples: int) -> None:
        """Every channel moves on by `samples` of silence (a pause, discarded audio)."""
        end = max(self.next_sample.values()) + samples
        for speaker in self.next_sample:
            if end > self.next_sample[speaker]:
                self.write(speaker, np.zeros(end - self.next_sample[speaker], np.int16))

    def dtmf(self, speaker: Speaker, digit: str) -> None:
        if self.ended:
            return
        self.context.counters["dtmf"] += 1
        at = self.next_sample.get(speaker, max(self.next_sample.values()))
        self.context.sink.dtmf(self.call_id, speaker, digit, at / self.rate, 0.0)

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.context.sink.call_ended(self.call_id, reason)


class Session:
    """The interface the server drives; see the module docstring."""

    kind = ""

    def __init__(self, context: SessionContext) -> None:
        self.context = context
        self.call: CallWriter | None = None
        self.failed = False
        self.done = False

    def text(self, data: str, now: float) -> list[str]:
        raise SignallingError(self.kind, "text messages are not part of this protocol")

    def binary(self, data: bytes, now: float) -> list[str]:
        raise SignallingError(self.kind, "binary messages are not part of this protocol")

    def closed(self, reason: str) -> None:
        """The connection is gone; a call still open ends with `reason`."""
        if self.call is not None:
            self.call.end(reason)


class TwilioSession(Session):
    """Twilio Media Streams: `connected`, `start`, `media` (base64 µ-law, `inbound` = the
    caller = customer, `outbound` = what the caller hears = agent), `dtmf`, `stop`. Media
    timestamps (ms from the stream's start) place each chunk on the call clock."""

    kind = "twilio"
    _TRACKS = {"inbound": Speaker.CUSTOMER, "inbound_track": Speaker.CUSTOMER,
               "outbound": Speaker.AGENT, "outbound_track": Speaker.AGENT}

    def text(self, data: str, now: float) -> list[str]:
        message = formats.parse_twilio(data)
        if message.event == "start":
            if self.call is not None:
                raise SignallingError("Twilio", "second start message")
            params = dict(message.parameters)
            channels = tuple(dict.fromkeys(self._TRACKS[t] for t in message.tracks
                                           if t in self._TRACKS)) or (Speaker.CUSTOMER,)
            agent = params.get(self.context.agent_parameter) or self.context.agent_id
            self.call = CallWriter(self.context, self.kind, agent, channels, formats.PCMU_RATE)
        elif message.event in ("media", "dtmf"):
            if self.call is None:
                raise SignallingError("Twilio", f"{message.event} before start")
            speaker = self._TRACKS.get(message.track)
            if speaker is None:
                raise SignallingError("Twilio", f"unknown track {message.track!r}")
            if message.event == "media":
                assert message.audio is not None  # parse_twilio decodes every media payload
                self.call.write(speaker, message.audio,
                                message.timestamp_ms * formats.PCMU_RATE // 1000)
            else:
                self.call.dtmf(speaker, message.digit)
        elif message.event == "stop":
            if self.call is not None:
                self.call.end("hangup")
            self.done = True
        return []


class AudioHookSession(Session):
    """Genesys AudioHook (protocol 2): `open` is answered with `opened` (PCMU 8 kHz, stereo
    external = customer / internal = agent when offered), binary frames carry interleaved
    µ-law, `ping` gets `pong`, `paused`/`resumed` and `discarded` move the call clock on by
    the time no audio came, `dtmf` is the customer's key, `close` gets `closed` and ends the
    call with `hangup`."""

    kind = "audiohook"
    _SPEAKERS = {"external": Speaker.CUSTOMER, "internal": Speaker.AGENT}

    def __init__(self, context: SessionContext) -> None:
        super().__init__(context)
        self.seq = 0
        self.clientseq = 0
        self.session_id = ""
        self.speakers: tuple[Speaker, ...] = ()
        self.paused_at: float | None = None

    def _reply(self, kind: str, parameters: dict | None = None) -> str:
        self.seq += 1
        return formats.audiohook_reply(kind, self.seq, self.clientseq, self.session_id,
                                       parameters=parameters)

    def text(self, data: str, now: float) -> list[str]:
        message = formats.parse_audiohook(data)
        if self.session_id and message.id != self.session_id:
            raise SignallingError("AudioHook", f"message for session {message.id!r}")
        if message.seq != self.clientseq + 1:
            self.context.counters["sequence_errors"] += 1
        self.clientseq = message.seq
        kind = message.type
        if kind == "open":
            if self.call is not None:
                raise SignallingError("AudioHook", "second open message")
            self.session_id = message.id
            try:
                media = formats.choose_audiohook_media(message.parameters.get("media"))
            except SignallingError:
                self.failed = True
                raise
            self.speakers = tuple(self._SPEAKERS[c] for c in media["channels"])
            variables = message.parameters.get("inputVariables") or {}
            agent = (variables.get(self.context.agent_parameter) if isinstance(variables, dict)
                     else None) or self.context.agent_id
            self.call = CallWriter(self.context, self.kind, str(agent), self.speakers,
                                   formats.PCMU_RATE)
            return [self._reply("opened", {"startPaused": False, "media": [media]})]
        if self.call is None:
            raise SignallingError("AudioHook", f"{kind} before open")
        if kind == "ping":
            return [self._reply("pong")]
        if kind == "paused":
            self.paused_at = now
        elif kind == "resumed":
            if self.paused_at is not None:
                self.call.skip(round((now - self.paused_at) * formats.PCMU_RATE))
                self.paused_at = None
        elif kind == "discarded":
            discarded = formats.parse_duration(str(message.parameters.get("discarded", "")))
            self.call.skip(round(discarded * formats.PCMU_RATE))
        elif kind == "dtmf":
            digit = str(message.parameters.get("digit", ""))
            if digit not in list("0123456789*#ABCD"):
                raise SignallingError("AudioHook", f"bad DTMF digit {digit!r}")
            self.call.dtmf(Speaker.CUSTOMER, digit)
        elif kind == "close":
            self.call.end("hangup")
            self.done = True
            return [self._reply("closed")]
        elif kind == "error":
            self.call.end(f"error: AudioHook {message.parameters.get('code', '')} "
                          f"{message.parameters.get('message', '')}".rstrip())
            self.done = True
        else:
            self.context.counters["ignored"] += 1  # update, event, ...: nothing for us
        return []

    def binary(self, data: bytes, now: float) -> list[str]:
        if self.call is None:
            raise SignallingError("AudioHook", "audio before open")
        if self.paused_at is not None:
            self.call.skip(round((now - self.paused_at) * formats.PCMU_RATE))
            self.paused_at = None
        pcm = g711.ulaw_decode(data)
        if len(pcm) % len(self.speakers):
            raise SignallingError("AudioHook", f"{len(pcm)} bytes is not whole stereo frames")
        for speaker, channel in zip(self.speakers,
                                    formats.split_channels(pcm, len(self.speakers)),
                                    strict=True):
            self.call.write(speaker, channel)
        return []


class StreamSession(Session):
    """FreeSWITCH `mod_audio_stream` / `mod_audio_fork`: binary L16 at `rate`, mono (the
    caller: customer), mixed (both parties: unknown) or stereo (caller left = customer,
    callee right = agent). An optional first text message is the JSON metadata given to
    `uuid_audio_stream`/`uuid_audio_fork`; its `agent` key names the agent."""

    kind = "freeswitch"
    _MIX = {"mono": (Speaker.CUSTOMER,), "mixed": (Speaker.UNKNOWN,),
            "stereo": (Speaker.CUSTOMER, Speaker.AGENT)}

    def __init__(self, context: SessionContext, *, mix: str, rate: int, agent: str) -> None:
        super().__init__(context)
        if mix not in self._MIX:
            raise SignallingError("FreeSWITCH", f"mix {mix!r} is not mono, mixed or stereo")
        if rate not in (8000, 16000, 24000, 32000, 48000):
            raise SignallingError("FreeSWITCH", f"unsupported rate {rate}")
        self.speakers = self._MIX[mix]
        self.rate = rate
        self.agent = agent or context.agent_id

    def _start(self) -> CallWriter:
        if self.call is None:
            self.call = CallWriter(self.context, self.kind, self.agent, self.speakers, self.rate)
        return self.call

    def text(self, data: str, now: float) -> list[str]:
        if self.call is not None:
            self.context.counters["ignored"] += 1  # later metadata: nothing for us
            return []
        try:
            metadata = formats.json_object("FreeSWITCH", data)
        except SignallingError:
            self._start()  # bad metadata does not stop the audio that follows
            raise
        agent = metadata.get(self.context.agent_parameter)
        if agent:
            self.agent = str(agent)
        self._start()
        return []

    def binary(self, data: bytes, now: float) -> list[str]:
        call = self._start()
        pcm = formats.decode_l16(data)
        if len(pcm) % len(self.speakers):
            raise SignallingError("FreeSWITCH", "audio is not whole stereo frames")
        for speaker, channel in zip(self.speakers, formats.split_channels(pcm, len(self.speakers)),
                                    strict=True):
            call.write(speaker, channel)
        return []
