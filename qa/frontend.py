"""One channel's front end: frame, VAD, endpoint (resampling if needed); emits `Utterance`s.

File transcription and live calls both go through `ChannelFrontEnd`, so a replayed call cuts
exactly the utterances the live call cut. Per-chunk work is Python; per-frame work is native
(`qa._native.vad`, `qa._native.endpointer`, `qa._native.resample`).

Telephony audio (8 kHz, `NATIVE_VAD_RATES`) is framed, classified and endpointed at its own
rate: webrtcvad takes 8 kHz frames, and the utterances carry their 8 kHz samples. Only what
goes to the recogniser is resampled to 16 kHz, once per utterance on the transcription
worker (`Utterance.pcm16`), so the frame path of a telephony channel does no resampling at
all. Each utterance also carries the few samples either side of it that the resampler reads
(the endpointer's `context`), so its 16 kHz samples are exactly those that resampling the
whole channel gives: the recogniser hears what it heard when every chunk was resampled.
Any other rate is resampled to 16 kHz before the VAD.

The call clock stays true: a chunk that starts after the previous one ended has the gap
filled with silence (counted in `gap_samples`); samples that overlap what was already heard are
dropped (counted in `late_samples`). Input-rate sample `i` lands on 16 kHz sample
`i * 16000 / input_rate` exactly, because the resampler is clock-aligned and its stream starts
on a sample where that ratio is whole.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from qa._native.endpointer import Endpointer
from qa._native.vad import VALID_FRAME_MS, FrameVad
from qa.types import SAMPLE_RATE, AudioChunk, Speaker, Utterance

log = logging.getLogger("qa.frontend")

#: Gap silence is fed in blocks of this many input samples, so a long gap never allocates
#: more than one block (one second at 16 kHz).
_GAP_BLOCK = 16_000
#: Input rates classified at their own rate: webrtcvad takes 8 kHz frames, and 16 kHz is an
#: integer multiple, so utterance spans map onto the 16 kHz clock exactly.
NATIVE_VAD_RATES = (8000,)


@dataclass(frozen=True)
class EndpointerOptions:
    """When speech starts and ends. Frame counts assume the front end's `frame_ms`.

    Defaults were checked on the shared clips (16 kHz and the 8 kHz µ-law copies, VAD mode 2):
    the utterances cover each clip's speech; pauses inside a sentence (under half a second) do
    not cut it, while the pauses of about 0.7 s between the digit strings of
    `en_digits_vosk` and between the phrases of `en_jfk_inaugural` do.

    Attributes:
        start_window: Frames looked at to decide that speech started (10 x 30 ms = 300 ms).
        start_voiced: Voiced frames among the last `start_window` that start speech; 7 of 10
            ignores clicks and single noisy frames yet starts within about 0.2 s.
        end_silence_ms: Length of the window looked at to decide that speech ended.
        end_unvoiced_ratio: Share of unvoiced frames in that window that ends speech (0.9
            lets a stray voiced frame in a pause not hold the utterance open).
        pre_roll_ms: Audio kept before the first voiced frame (soft onsets webrtcvad misses),
            rounded down to whole frames.
        post_roll_ms: Audio kept after the last voiced frame (trailing consonants), rounded
            down to whole frames.
        max_utterance_s: Longest utterance; longer speech is split (Whisper decodes 30 s
            windows, and a live call needs text before the speaker pauses).
        split_search_s: An over-long utterance is cut at its quietest frame within this
            many final seconds.
        min_utterance_ms: Utterances shorter than this (pre- and post-roll included) are
            discarded as blips and counted.
    """

    start_window: int = 10
    start_voiced: int = 7
    end_silence_ms: int = 600
    end_unvoiced_ratio: float = 0.9
    pre_roll_ms: int = 300
    post_roll_ms: int = 150
    max_utterance_s: float = 15.0
    split_search_s: float = 3.0
    min_utterance_ms: int = 300

    def __post_init__(self) -> None:
        if not 1 <= self.start_voiced <= self.start_window:
            raise ValueError("EndpointerOptions: need 1 <= start_voiced <= start_window")
        if not 0.0 < self.end_unvoiced_ratio <= 1.0:
            raise ValueError("EndpointerOptions: end_unvoiced_ratio must be in (0, 1]")
        if min(self.end_silence_ms, self.max_utterance_s, self.split_search_s) <= 0:
            raise ValueError("EndpointerOptions: windows and lengths must be positive")
        if min(self.pre_roll_ms, self.post_roll_ms, self.min_utterance_ms) < 0:
            raise ValueError("EndpointerOptions: roll and minimum lengths must be >= 0")
        if self.split_search_s >= self.max_utterance_s:
            raise ValueError("EndpointerOptions: split_search_s must be below max_utterance_s")

    def in_frames(self, frame_ms: int) -> dict[str, int]:
        """The endpointer's frame-count arguments for frames of `frame_ms` milliseconds."""
        end_window = max(1, self.end_silence_ms // frame_ms)
        # The small epsilon keeps 0.9 * 20 at 18, not 18.000000000000004 -> 19.
        end_unvoiced = max(1, math.ceil(self.end_unvoiced_ratio * end_window - 1e-9))
        max_frames = max(2, int(self.max_utterance_s * 1000) // frame_ms)
        split_search = min(max(1, int(self.split_search_s * 1000) // frame_ms), max_frames - 1)
        return {
            "start_window": self.start_window,
            "start_voiced": self.start_voiced,
            "end_window": end_window,
            "end_unvoiced": end_unvoiced,
            "pre_roll": self.pre_roll_ms // frame_ms,
            "post_roll": self.post_roll_ms // frame_ms,
            "max_frames": max_frames,
            "split_search": split_search,
            "min_frames": -(-self.min_utterance_ms // frame_ms),
        }


@dataclass(frozen=True)
class FrontEndOptions:
    """How a channel is framed and classified.

    Attributes:
        vad_mode: webrtcvad aggressiveness, 0-3. 2 covers all speech of the shared clips,
            8 kHz µ-law copies included; 3 lost the first second of an 8 kHz AISHELL clip.
        frame_ms: Frame length in ms (10, 20 or 30; webrtcvad takes no other).
        endpointer: When speech starts and ends.
    """

    vad_mode: int = 2
    frame_ms: int = 30
    endpointer: EndpointerOptions = EndpointerOptions()

    def __post_init__(self) -> None:
        if not 0 <= self.vad_mode <= 3:
            raise ValueError(f"FrontEndOptions: vad_mode must be 0..3, got {self.vad_mode}")
        if self.frame_ms not in VALID_FRAME_MS:
            raise ValueError(f"FrontEndOptions: frame_ms must be one of {VALID_FRAME_MS}")


@dataclass(frozen=True)
class FrontEndStats:
    """Counters of one channel's front end.

    Attributes:
        frames: Frames classified (at the input rate for `NATIVE_VAD_RATES`, else 16 kHz).
        voiced_frames: Of those, frames webrtcvad called speech.
        utterances: Utterances emitted.
        discarded_blips: Speech shorter than `min_utterance_ms`, dropped.
        gap_samples: Silence inserted (input-rate samples) where a chunk started after the
            previous one ended.
        late_samples: Input-rate samples dropped because they overlapped audio already heard.
        rejected_chunks: Chunks dropped for a sample rate other than the channel's.
    """

    frames: int = 0
    voiced_frames: int = 0
    utterances: int = 0
    discarded_blips: int = 0
    gap_samples: int = 0
    late_samples: int = 0
    rejected_chunks: int = 0


@functools.cache
def resampler_reach(rate: int) -> int:
    """Input samples the resampler from `rate` to 16 kHz reads past either edge of a span
    (designing its filter takes longer than a channel's first seconds of VAD: once per rate)."""
    from qa._native.resample import Resampler

    return Resampler(rate, SAMPLE_RATE).delay_in


class ChannelFrontEnd:
    """Turns one channel's `AudioChunk`s into `Utterance`s on the call's 16 kHz clock.

    Args:
        call_id: Call the utterances belong to.
        speaker: Channel the utterances come from.
        input_rate: Sample rate of the chunks (any positive rate; 16 kHz is not resampled).
        options: Framing, VAD and endpointer options.
    """

    def __init__(
        self,
        call_id: str,
        speaker: Speaker,
        input_rate: int,
        options: FrontEndOptions = FrontEndOptions(),
    ) -> None:
        if input_rate <= 0:
            raise ValueError(f"input_rate must be positive, got {input_rate}")
        self.call_id = call_id
        self.speaker = speaker
        self.input_rate = input_rate
        self.options = options
        self._resampler = None
        self._native = input_rate in NATIVE_VAD_RATES
        if input_rate != SAMPLE_RATE and not self._native:
            from qa._native.resample import Resampler

            self._resampler = Resampler(input_rate, SAMPLE_RATE)
        # Input and output clocks meet every `_period_in` input samples.
        common = math.gcd(input_rate, SAMPLE_RATE)
        self._period_in = input_rate // common
        self._period_out = SAMPLE_RATE // common
        vad_rate = input_rate if self._native else SAMPLE_RATE
        self._vad = FrameVad(vad_rate, self.options.frame_ms, self.options.vad_mode)
        self._pcm_rate = vad_rate
        self._endpointer: Endpointer | None = None
        self._next_sample = 0
        self._index = 0
        self._gap_samples = 0
        self._late_samples = 0
        self._rejected = 0
        self._flushed = False

    @property
    def open_start_sample(self) -> int | None:
        """16 kHz call-clock start of the open utterance, or None when not speaking."""
        start = None if self._endpointer is None else self._endpointer.open_start_sample
        return None if start is None else start * self._scale

    @property
    def settled_sample(self) -> int:
        """Every utterance this front end has yet to emit starts at or after this sample.

        On the 16 kHz call clock. Audio before it is fully cut, so rule deadlines up to it
        can fire. It trails the audio pushed by the resampler's look-ahead (none at a native
        rate), the partial frame and, while idle, the start window plus pre-roll (a later
        start reaches back that far); at a native rate, an utterance that ended on the newest
        frame also holds it back until the next frame brings the samples after it.
        """
        if self._endpointer is None:
            return 0
        return self._endpointer.settled_sample * self._scale

    @property
    def _scale(self) -> int:
        # Endpointer samples per 16 kHz sample: at a native rate it counts input samples.
        return SAMPLE_RATE // self.input_rate if self._native else 1

    @property
    def stats(self) -> FrontEndStats:
        """A snapshot of the counters."""
        ep = self._endpointer
        return FrontEndStats(
            frames=self._vad.frames,
            voiced_frames=self._vad.voiced_frames,
            utterances=ep.utterances if ep is not None else 0,
            discarded_blips=ep.discarded if ep is not None else 0,
            gap_samples=self._gap_samples,
            late_samples=self._late_samples,
            rejected_chunks=self._rejected,
        )

    def push(self, chunk: AudioChunk) -> list[Utterance]:
        """Take the next chunk of this channel.

        Args:
            chunk: Audio at `input_rate`; `first_sample` places it on the call clock.

        Returns:
            Utterances this chunk closed (often none).
        """
        if self._flushed:
            raise RuntimeError("ChannelFrontEnd.push after flush")
        if chunk.sample_rate != self.input_rate:
            self._rejected += 1
            log.warning(
                "call %s %s: chunk at %s Hz on a %s Hz channel dropped",
                self.call_id,
                self.speaker,
                chunk.sample_rate,
                self.input_rate,
            )
            return []
        pcm = chunk.pcm
        first = chunk.first_sample
        out: list[tuple] = []
        if self._endpointer is None:
            self._start(first, out)
        if first > self._next_sample:
            gap = first - self._next_sample
            self._gap_samples += gap
            self._silence(gap, out)
        elif first < self._next_sample:
            late = min(self._next_sample - first, len(pcm))
            self._late_samples += late
            pcm = pcm[late:]
        if len(pcm):
            self._feed(pcm, out)
        return self._wrap(out)

    def flush(self) -> list[Utterance]:
        """End of stream: resample the tail and close the open utterance.

        Returns:
            The utterances still open.
        """
        if self._flushed or self._endpointer is None:
            self._flushed = True
            return []
        self._flushed = True
        out: list[tuple] = []
        if self._resampler is not None:
            out.extend(self._endpointer.process(self._resampler.flush()))
        out.extend(self._endpointer.flush())
        return self._wrap(out)

    def _start(self, first: int, out: list[tuple]) -> None:
        # Start the stream on the last whole-ratio sample at or before the first chunk, and
        # fill up to the chunk with silence, so that sample indices map exactly.
        aligned = first - first % self._period_in
        base = aligned // self._period_in * self._period_out
        opts = self.options.endpointer.in_frames(self.options.frame_ms)
        context = 0
        if self._native:
            # The endpointer counts input samples; `_wrap` maps them onto the 16 kHz clock.
            base = aligned
            context = resampler_reach(self.input_rate)
        self._endpointer = Endpointer(
            self._vad.frame_len, vad=self._vad, base_sample=base, context=context, **opts
        )
        self._next_sample = aligned
        self._silence(first - aligned, out)

    def _silence(self, n: int, out: list[tuple]) -> None:
        block = np.zeros(min(n, _GAP_BLOCK), dtype=np.int16)
        while n > 0:
            step = min(n, _GAP_BLOCK)
            self._feed(block[:step], out)
            n -= step

    def _feed(self, pcm: np.ndarray, out: list[tuple]) -> None:
        self._next_sample += len(pcm)
        pcm = pcm if self._resampler is None else self._resampler.process(pcm)
        assert self._endpointer is not None  # made by the first chunk, before any feed
        closed = self._endpointer.process(pcm)
        if closed:
            out.extend(closed)

    def _wrap(self, found: list[tuple]) -> list[Utterance]:
        if not found:
            return []
        now = time.monotonic()
        scale = self._scale
        result = []
        for start, end, pcm, forced, *context in found:
            result.append(
                Utterance(
                    call_id=self.call_id,
                    speaker=self.speaker,
                    start_sample=start * scale,
                    end_sample=end * scale,
                    pcm=pcm,
                    index=self._index,
                    forced_split=forced,
                    closed_at=now,
                    sample_rate=self._pcm_rate,
                    context=tuple(context) if context else None,
                )
            )
            self._index += 1
        return result
