"""Sound-card capture: one stereo input (left = agent, right = customer) or two devices.

PortAudio's callback (`qa._native.capture`) runs without the GIL and only copies each channel
into its own `RingBuffer`. This module's consumer loop wakes once per block, drains every ring
into a preallocated buffer and hands `AudioChunk`s at the device's rate to the sink (the native
front end resamples to 16 kHz). Each chunk's `first_sample` is the ring's absolute index, so
audio lost to an overrun appears downstream as a gap on the call clock, and is counted here.

Device indices are PortAudio's: `sounddevice` wraps the same libportaudio in the same process,
so an index from `sounddevice.query_devices()` names the same device to `CaptureStream`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from qa.errors import DependencyError, SourceError
from qa.ids import new_call_id
from qa.sources.base import SourceSink
from qa.types import AudioChunk, CallInfo, Speaker, channel_speakers

log = logging.getLogger("qa.sources.soundcard")


@dataclass(frozen=True, slots=True)
class SoundcardOptions:
    """How to capture a call from sound cards.

    Attributes:
        device: Input device by PortAudio index or name (exact, else a unique case-insensitive
            substring); None for PortAudio's default input device.
        second_device: A second input for the two-device mode (first device = agent
            microphone, second = call audio); each device is then opened mono.
        sample_rate: Capture rate in Hz; None for the first device's default rate.
        speakers: Who each captured channel is, in order (first device's channels, then the
            second device's). Empty: stereo device = (agent, customer), mono device =
            (unknown,), two devices = (agent, customer).
        block_ms: Milliseconds per PortAudio callback and per chunk handed to the sink.
        ring_seconds: Seconds of audio each channel's ring holds before the oldest unread
            audio is dropped (and counted).
        agent_id: The agent recorded on the call.
    """

    device: int | str | None = None
    second_device: int | str | None = None
    sample_rate: int | None = None
    speakers: tuple[Speaker, ...] = ()
    block_ms: int = 20
    ring_seconds: float = 10.0
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class InputDevice:
    """One PortAudio device that can record, as `qa devices` lists it."""

    index: int
    name: str
    max_input_channels: int
    default_samplerate: float
    hostapi: str


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise DependencyError(
            f"sound-card capture needs sounddevice and libportaudio2 "
            f"(pip install sounddevice; apt install libportaudio2): {exc}"
        ) from exc
    return sounddevice


def list_input_devices() -> tuple[InputDevice, ...]:
    """Returns every PortAudio device with at least one input channel, by index."""
    sd = _sounddevice()
    devices = []
    for index, info in enumerate(sd.query_devices()):
        if info["max_input_channels"] > 0:
            devices.append(
                InputDevice(
                    index=index,
                    name=info["name"],
                    max_input_channels=info["max_input_channels"],
                    default_samplerate=info["default_samplerate"],
                    hostapi=sd.query_hostapis(info["hostapi"])["name"],
                )
            )
    return tuple(devices)


def resolve_device(spec: int | str | None) -> InputDevice:
    """Finds an input device by index, exact name or unique substring of its name.

    Args:
        spec: An index, a digit string, a name, or None for the default input device.

    Returns:
        The device.

    Raises:
        SourceError: No input device matches, or a name matches several.
    """
    devices = list_input_devices()
    if not devices:
        raise SourceError("no audio input device found")
    if spec is None:
        sd = _sounddevice()
        try:
            spec = int(sd.query_devices(kind="input")["index"])
        except sd.PortAudioError:
            # PortAudio names no default input (no default card): take the first one.
            spec = devices[0].index
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        for device in devices:
            if device.index == spec:
                return device
        raise SourceError(f"no input device with index {spec} (see `qa devices`)")
    exact = [d for d in devices if d.name == spec]
    if exact:
        return exact[0]
    partial = [d for d in devices if spec.lower() in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise SourceError(f"no input device named {spec!r} (see `qa devices`)")
    names = ", ".join(f"{d.index}: {d.name}" for d in partial)
    raise SourceError(f"device name {spec!r} is ambiguous: {names}")


class SoundcardSource:
    """Captures one call from one or two sound cards (implements `qa.sources.base.Source`).

    The call starts when `run` is called and ends when `stop` is set (reason `stopped`).
    Devices are resolved at construction, so a wrong name fails before anything starts.
    """

    def __init__(self, options: SoundcardOptions) -> None:
        self.options = options
        if options.block_ms <= 0 or options.ring_seconds <= 0:
            raise SourceError("block_ms and ring_seconds must be positive")
        self.devices: tuple[InputDevice, ...] = (resolve_device(options.device),)
        if options.second_device is not None:
            self.devices += (resolve_device(options.second_device),)
        self.sample_rate = int(options.sample_rate or self.devices[0].default_samplerate)
        self.speakers = options.speakers or self._default_speakers()
        if len(set(self.speakers)) != len(self.speakers):
            raise SourceError(f"each channel needs its own speaker, got {self.speakers}")
        self._channels_per_device = self._split_channels()
        self.name = "soundcard:" + "+".join(d.name for d in self.devices)
        self._streams: tuple = ()
        self._rings: tuple = ()
        self._gaps = [0] * len(self.speakers)
        self._gap_samples = [0] * len(self.speakers)

    def _default_speakers(self) -> tuple[Speaker, ...]:
        two = len(self.devices) == 2 or self.devices[0].max_input_channels >= 2
        return channel_speakers(2 if two else 1)

    def _split_channels(self) -> tuple[int, ...]:
        if len(self.devices) == 2:
            if len(self.speakers) != 2:
                raise SourceError("two devices carry two channels: one speaker each")
            return (1, 1)
        wanted, available = len(self.speakers), self.devices[0].max_input_channels
        if wanted > available:
            raise SourceError(
                f"{self.devices[0].name} has {available} input channel(s), {wanted} asked for"
            )
        return (wanted,)

    def _open(self) -> None:
        from qa._native.capture import CaptureStream
        from qa._native.ring import RingBuffer

        block = self._block_frames()
        capacity = int(self.options.ring_seconds * self.sample_rate)
        rings = tuple(RingBuffer(capacity) for _ in self.speakers)
        streams = []
        first = 0
        try:
            for device, count in zip(self.devices, self._channels_per_device, strict=True):
                streams.append(
                    CaptureStream(
                        device.index, count, self.sample_rate, rings[first : first + count], block
                    )
                )
                first += count
        except BaseException:
            for stream in streams:
                stream.close()
            raise
        self._rings, self._streams = rings, tuple(streams)
        self._gaps = [0] * len(rings)
        self._gap_samples = [0] * len(rings)

    def _block_frames(self) -> int:
        return max(1, self.sample_rate * self.options.block_ms // 1000)

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Captures one call until `stop` is set; ends it with `stopped` (or `error: ...`)."""
        self._open()
        call_id = new_call_id("soundcard")
        sink.call_started(
            CallInfo(
                call_id=call_id,
                agent_id=self.options.agent_id,
                source=self.name,
                started_at=time.time(),
                channels=tuple(self.speakers),
                sample_rate=self.sample_rate,
            )
        )
        reason = "stopped"
        # One reusable buffer per channel: the loop allocates only the chunk it hands on.
        buffers = [np.empty(self._block_frames(), dtype=np.int16) for _ in self._rings]
        expected = [0] * len(self._rings)
        try:
            for stream in self._streams:
                stream.start()
            log.info("capturing %s at %s Hz as %s", self.name, self.sample_rate, call_id)
            while not stop.wait(self.options.block_ms / 1000):
                self._drain(sink, call_id, buffers, expected)
            for stream in self._streams:
                stream.stop()
            self._drain(sink, call_id, buffers, expected)
        except Exception as exc:
            reason = f"error: {exc}"
            raise
        finally:
            for stream in self._streams:
                stream.close()
            sink.call_ended(call_id, reason)

    def _drain(
        self, sink: SourceSink, call_id: str, buffers: list[np.ndarray], expected: list[int]
    ) -> None:
        for k, ring in enumerate(self._rings):
            buf = buffers[k]
            while (n := ring.read(buf)) > 0:
                first = ring.last_read_start
                if first != expected[k]:
                    # An overrun skipped audio: keep the clock honest and count the hole.
                    self._gaps[k] += 1
                    self._gap_samples[k] += first - expected[k]
                    log.warning(
                        "%s lost %s samples on %s", call_id, first - expected[k], self.speakers[k]
                    )
                expected[k] = first + n
                sink.audio(
                    AudioChunk(call_id, self.speakers[k], buf[:n].copy(), self.sample_rate, first)
                )

    def stats(self) -> Mapping[str, int]:
        """Counters of the latest run: callbacks, frames, over/underflows, drops per channel."""
        out = {
            "callbacks": sum(s.callbacks for s in self._streams),
            "frames": sum(s.frames for s in self._streams),
            "overflows": sum(s.overflows for s in self._streams),
            "underflows": sum(s.underflows for s in self._streams),
        }
        for k, speaker in enumerate(self.speakers):
            out[f"ring_dropped_{speaker}"] = self._rings[k].dropped if self._rings else 0
            out[f"gaps_{speaker}"] = self._gaps[k]
            out[f"gap_samples_{speaker}"] = self._gap_samples[k]
        return out
