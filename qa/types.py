"""The five values that pass between stages (see docs/design.md), their small parts, and the
contracts between stages: the call as a source announces it (`CallInfo`), what a finished call
looked like (`CallSummary`), the listener interface (`PipelineListener`) and the transcription
step's signature (`TranscribeFn`, `TranscribeBatchFn`).

Every time here is audio time: seconds since the call's first sample, counted in samples.
Values are frozen; PCM arrays are made read-only on construction so that a stage can hand
the same buffer to several consumers without copying.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

#: The rate of the call clock, of what the recogniser takes (`Utterance.pcm16`) and of
#: every time after the front end.
SAMPLE_RATE = 16_000


class Speaker(enum.StrEnum):
    """Who spoke. Channels decide it, never diarisation (docs/design.md)."""

    AGENT = "agent"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


def channel_speakers(channels: int) -> tuple[Speaker, ...]:
    """Speaker of each channel of a recording or sound card: stereo is (agent, customer),
    left = agent as call recorders write it; mono is (unknown,). The one place this
    convention lives."""
    return (Speaker.AGENT, Speaker.CUSTOMER) if channels == 2 else (Speaker.UNKNOWN,)


def _readonly_int16(name: str, pcm: np.ndarray) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise TypeError(f"{name} must be a 1-D int16 numpy array")
    pcm.flags.writeable = False


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A run of one channel's samples, as a source delivers them.

    Attributes:
        call_id: The call this audio belongs to.
        channel: `agent`, `customer`, or `unknown` for a mono source.
        pcm: 1-D int16 samples at `sample_rate`.
        sample_rate: Samples per second of `pcm` (any rate the front end resamples).
        first_sample: Index of `pcm[0]` on the call's clock, counted at `sample_rate`.
    """

    call_id: str
    channel: Speaker
    pcm: np.ndarray
    sample_rate: int
    first_sample: int

    def __post_init__(self) -> None:
        _readonly_int16("AudioChunk.pcm", self.pcm)
        if self.sample_rate <= 0:
            raise ValueError(f"AudioChunk.sample_rate must be positive, got {self.sample_rate}")
        if self.first_sample < 0:
            raise ValueError(f"AudioChunk.first_sample must be >= 0, got {self.first_sample}")

    @property
    def start(self) -> float:
        """Start time in seconds on the call clock."""
        return self.first_sample / self.sample_rate

    @property
    def end(self) -> float:
        """End time (exclusive) in seconds on the call clock."""
        return (self.first_sample + len(self.pcm)) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Utterance:
    """One stretch of one speaker's speech, cut by the endpointer.

    Telephony channels are cut at their own 8 kHz rate, and their utterances carry those
    samples: resampling to 16 kHz is the recogniser's business, done once per utterance on
    the transcription worker (`pcm16`), not on the frame path of every channel.

    Attributes:
        call_id: The call it belongs to.
        speaker: The channel it came from.
        start_sample: First sample (inclusive) on the call clock at 16 kHz, pre-roll included.
        end_sample: Last sample (exclusive) on the call clock at 16 kHz.
        pcm: The int16 samples `[start_sample, end_sample)` at `sample_rate`.
        index: Sequence number of this utterance within its channel, from 0.
        forced_split: True when the endpointer cut over-long speech here rather than at a pause.
        closed_at: `time.monotonic()` when the endpointer closed it (for latency metrics only;
            never used as a clock for rules). 0.0 when not measured.
        sample_rate: Rate of `pcm`: 16 kHz, or a rate that divides it (8 kHz telephony), so
            that the span on the 16 kHz clock is a whole number of its samples.
        context: For a `sample_rate` below 16 kHz, the samples of the channel just before
            and just after `pcm` (as many as the resampler reads past a span's edge; fewer
            only at the stream's start and end), so that `pcm16` is exactly the span of the
            whole channel resampled. None: silence around `pcm`.
    """

    call_id: str
    speaker: Speaker
    start_sample: int
    end_sample: int
    pcm: np.ndarray
    index: int = 0
    forced_split: bool = False
    closed_at: float = 0.0
    sample_rate: int = SAMPLE_RATE
    context: tuple[np.ndarray, np.ndarray] | None = None
    _pcm16: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _readonly_int16("Utterance.pcm", self.pcm)
        if self.sample_rate <= 0 or SAMPLE_RATE % self.sample_rate:
            raise ValueError(
                f"Utterance.sample_rate must divide {SAMPLE_RATE}, got {self.sample_rate}"
            )
        ratio = SAMPLE_RATE // self.sample_rate
        if self.context is not None:
            if len(self.context) != 2:
                raise ValueError("Utterance.context must be (before, after)")
            for part in self.context:
                _readonly_int16("Utterance.context", part)
        if self.end_sample - self.start_sample != len(self.pcm) * ratio:
            raise ValueError(
                f"Utterance spans {self.end_sample - self.start_sample} samples at "
                f"{SAMPLE_RATE} Hz but carries {len(self.pcm)} at {self.sample_rate} Hz"
            )

    @property
    def pcm16(self) -> np.ndarray:
        """The samples at 16 kHz, what the recogniser takes (read-only).

        `pcm` itself at 16 kHz; otherwise resampled on first use with its `context` (the
        front end's Kaiser-windowed resampler, >= 60 dB stopband) and kept, so an utterance
        decoded twice (a retry, a fallback path) is resampled once.
        """
        if self.sample_rate == SAMPLE_RATE:
            return self.pcm
        if self._pcm16 is None:
            from qa._native.resample import Resampler

            before, after = self.context or (self.pcm[:0], self.pcm[:0])
            resampler = Resampler(self.sample_rate, SAMPLE_RATE)
            ratio = SAMPLE_RATE // self.sample_rate
            whole = np.concatenate(
                [resampler.process(np.concatenate([before, self.pcm, after])), resampler.flush()]
            )
            skip = len(before) * ratio
            pcm16 = whole[skip : skip + len(self.pcm) * ratio]
            pcm16.flags.writeable = False
            # A cache, not state: two threads racing here compute the same array.
            object.__setattr__(self, "_pcm16", pcm16)
            return pcm16
        return self._pcm16

    @property
    def start(self) -> float:
        """Start time in seconds on the call clock."""
        return self.start_sample / SAMPLE_RATE

    @property
    def end(self) -> float:
        """End time in seconds on the call clock."""
        return self.end_sample / SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word (a character or short run for Chinese) with its times."""

    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True, slots=True)
class MaskedSpan:
    """A stretch of one channel of a recording replaced by a tone, because the transcript
    redacted what was said there (a card number, an ID, a date of birth, ...).

    Attributes:
        channel: Whose channel was masked.
        start: Start in seconds on the call clock (guard margin included).
        end: End in seconds on the call clock (guard margin included).
        kind: What the transcript redacted there (`CARD`, `ID`, `NUMBER`, ...; several
            joined with `+` when spans merged).
    """

    channel: Speaker
    start: float
    end: float
    kind: str


@dataclass(frozen=True, slots=True)
class Recording:
    """A call's stored audio, as the call store knows it (`CallStore.recording`).

    Attributes:
        call_id: The call.
        path: The compressed file (owner-only), absolute.
        codec: `flac` or `opus`.
        sample_rate: Samples per second of the file.
        channels: Channels in the file (agent left, customer right; 1 for a mono source).
        duration: Seconds of audio.
        bytes: Size of the file.
        masked_spans: What was replaced by a tone, in time order.
        created_at: Wall-clock time (epoch seconds) the file was written.
    """

    call_id: str
    path: str
    codec: str
    sample_rate: int
    channels: int
    duration: float
    bytes: int
    masked_spans: tuple[MaskedSpan, ...] = ()
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    """Recognised text of (part of) an utterance.

    Attributes:
        call_id: The call it belongs to.
        speaker: The channel it came from.
        start: Start time in seconds on the call clock.
        end: End time in seconds on the call clock.
        text: The text; Chinese in simplified characters.
        words: Words with call-clock times (empty when word timing was not asked for).
        final: False for a partial result that a later segment will replace.
        language: ISO 639-1 code of the text (`en`, `zh`, ...).
        avg_logprob: Mean token log-probability reported by the decoder.
        no_speech_prob: The decoder's probability that the audio held no speech.
    """

    call_id: str
    speaker: Speaker
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    final: bool = True
    language: str = ""
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


class EventKind(enum.StrEnum):
    """What a rule `Event` reports."""

    STEP_DONE = "step_done"
    STEP_DUE = "step_due"
    STEP_MISSED = "step_missed"
    FORBIDDEN_PHRASE = "forbidden_phrase"
    HANDLE_TIME_WARNING = "handle_time_warning"
    HANDLE_TIME_BREACH = "handle_time_breach"
    DEAD_AIR = "dead_air"
    TALK_OVER = "talk_over"
    TALK_SHARE = "talk_share"
    CATEGORY = "category"
    DTMF = "dtmf"


class Severity(enum.StrEnum):
    """How much an event matters to the agent and the supervisor."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Event:
    """Something the rule engine saw, at the audio time it happened.

    Attributes:
        call_id: The call it belongs to.
        time: Seconds on the call clock when it happened (a deadline's own time for a miss).
        kind: What happened.
        rule_id: The rule (step, phrase set, limit) that produced it.
        severity: How much it matters.
        points: Points this event takes off (negative) or confirms (zero or positive).
        evidence: The normalised text that matched, or a description of the measurement.
        message: The prompt shown to the agent.
        speaker: Whose speech produced it, when one speaker did.
        end: End of the evidence in seconds on the call clock (equal to `time` for instants).
        match: How the evidence matched the rule: `exact`, `fuzzy`, `pinyin` or `intent`
            ('' for events that no text produced: deadlines, timers, measurements).
        score: How well it matched: 1.0 for exact, lower for fuzzy and pinyin, the cosine
            similarity to the nearest example for `intent` (None when not matched on text).
        example: The pack's phrase or, for `intent`, the nearest example that it matched.
    """

    call_id: str
    time: float
    kind: EventKind
    rule_id: str
    severity: Severity = Severity.INFO
    points: float = 0.0
    evidence: str = ""
    message: str = ""
    speaker: Speaker = Speaker.UNKNOWN
    end: float | None = None
    match: str = ""
    score: float | None = None
    example: str = ""


@dataclass(frozen=True, slots=True)
class ScoreItem:
    """One line of a scorecard: a rule, the points it earned, and why."""

    rule_id: str
    description: str
    points_possible: float
    points_awarded: float
    evidence: tuple[str, ...] = ()
    times: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Scorecard:
    """The 100-point QA score of one call.

    Attributes:
        call_id: The call it scores.
        items: One entry per scored rule.
        total: Sum of awarded points, clamped to [0, 100].
        band: The pay band the total falls in (see `qa.rules.scoring`).
    """

    call_id: str
    items: tuple[ScoreItem, ...] = field(default_factory=tuple)
    total: float = 0.0
    band: str = ""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call as its source first sees it.

    Attributes:
        call_id: Unique id of the call (the source makes it).
        agent_id: The agent handling it, from configuration or the source ('' if unknown).
        source: A short description of where the audio comes from (`rtp://...`, `file:...`).
        started_at: Wall-clock time (epoch seconds) of the call's first sample, for the store.
        channels: The channels this call will carry.
        sample_rate: The rate of the chunks the source will deliver.
    """

    call_id: str
    agent_id: str
    source: str
    started_at: float
    channels: tuple[Speaker, ...]
    sample_rate: int


@dataclass(frozen=True, slots=True)
class CallSummary:
    """What a finished call looked like, for the console and the store.

    Attributes:
        call_id: The call.
        agent_id: Its agent ('' if unknown).
        source: Where its audio came from.
        reason: Why it ended (`end of file`, `timeout`, `stopped`, ...).
        duration: Seconds of audio on the call clock (the longest channel).
        speech: Seconds of speech per speaker, as cut by the endpointer.
        utterances: Utterances cut on all channels.
        segments: Final segments produced.
        dropped_utterances: Utterances dropped by the queue policy.
        gap_seconds: Audio missing from the source and filled with silence (all channels).
        latency_p50: Median seconds from end of speech (endpointer close) to final text.
        latency_p95: 95th percentile of the same.
        events: Rule events raised during the call.
        scorecard: The call's scorecard, when it was checked against a rule pack.
        category: The call's main category from the rule pack (None when none was heard).
        dead_air: Seconds nobody spoke, in silences past the dead-air threshold (the rule
            pack's, else `qa.conversation.DEAD_AIR_MIN`); see `qa.conversation`.
        talk_over: Seconds agent and customer spoke at once.
    """

    call_id: str
    agent_id: str
    source: str
    reason: str
    duration: float
    speech: tuple[tuple[Speaker, float], ...]
    utterances: int
    segments: int
    dropped_utterances: int
    gap_seconds: float
    latency_p50: float
    latency_p95: float
    events: int = 0
    scorecard: Scorecard | None = None
    category: str | None = None
    dead_air: float = 0.0
    talk_over: float = 0.0


class PipelineListener:
    """Receives what the pipeline produces. Override what you need; every call comes from the
    pipeline's one dispatcher thread, in order, never concurrently. An exception raised here
    is logged and counted, and the pipeline carries on (see `Pipeline`)."""

    def call_started(self, call: CallInfo) -> None:
        """A call began."""

    def segment(self, segment: Segment, latency: float) -> None:
        """A final segment, `latency` wall seconds after its utterance was closed."""

    def event(self, event: Event) -> None:
        """A rule event."""

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float) -> None:
        """A key press reported by the source."""

    def call_ended(self, summary: CallSummary) -> None:
        """A call ended and every one of its utterances has been transcribed (or dropped)."""


#: The transcription step: one utterance (and a language, None = detect) to its final segments.
TranscribeFn = Callable[[Utterance, "str | None"], list[Segment]]
#: The batched step: several utterances decoded together, segments per utterance in order.
TranscribeBatchFn = Callable[[Sequence[Utterance], "str | None"], list[list[Segment]]]
