"""Batched, short-window transcription: many utterances in one CTranslate2 call.

faster-whisper pads every input to Whisper's 30-second window, so a 2-second utterance costs
as much encoder time as a 30-second one, and each utterance is encoded and decoded on its
own. `BatchTranscriber` calls the CTranslate2 model of an already loaded `Transcriber`
directly: each utterance's log-Mel features are padded only to a short window (its length
plus a margin, rounded up; see `BatchOptions`), every utterance of a batch is padded to the
longest window in it, and the batch is encoded and decoded in one `encode` and one
`generate` call. Each utterance gets the per-utterance path's input: the transcriber's
silence padding (`TranscriberOptions.pad_s`) on both sides, and exactly the mel frames
faster-whisper gives the encoder (not the extractor's extra frame). The decode keeps the
per-utterance path's options (beam, temperature fallback, suppressed tokens) and its guards
(`Transcriber.reject_reason`: no-speech and log-probability cut-offs, repetition, known
silence hallucinations); Chinese comes out in simplified characters. Utterances longer than
Whisper's window go through the per-utterance path, which seeks through them window by
window, and so does everything when the transcriber's options ask for word timestamps.
The faster-whisper internals this drives are reached through `qa.whisper_parts` only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from qa.textnorm import to_simplified
from qa.types import SAMPLE_RATE, Segment, Utterance
from qa.whisper_parts import WhisperParts

log = logging.getLogger("qa.batching")

#: Whisper's full window: 30 s of 10 ms mel frames.
WINDOW_FRAMES = 3000
#: Mel frames per second (hop of 160 samples at 16 kHz).
FRAMES_PER_SECOND = 100


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How utterances are padded and decoded in a batch.

    Attributes:
        pad_frames: Frames of padding added after each utterance's features before rounding
            (100 = 1 s). Whisper was trained on 30 s windows; on short ones it repeats
            itself into the padding or garbles short utterances (docs/capacity.md has the
            sweep over every shared clip).
        frame_multiple: The window is rounded up to a multiple of this many frames, so
            batches of similar utterances share a length.
        min_frames: Shortest window. 1500 (15 s) kept pooled English WER within 0.01 and
            Chinese CER equal to the per-utterance path; 500-1000 cost up to 0.03 WER (the
            8 kHz digits clip) for an encoder 2-3x cheaper. Every utterance up to 12 s gets
            this same window, so batching them changes no padding.
        without_timestamps: Decode without timestamp tokens. Off by default: with
            timestamps, text after a timestamp past the end of the audio (Whisper repeating
            the utterance into the padding) is cut, which no-timestamp decoding cannot do.
            Either way the result is one segment per utterance spanning it.
        max_tokens_per_second: Bound on new tokens per second of audio (plus 32), so a
            decode that starts repeating cannot run to Whisper's 448-token limit.
        timestamp_slack: Seconds past the end of the audio a timestamp may reach before the
            text after it is cut.
        pad_s: Silence added before and after each utterance; None takes the transcriber's
            `TranscriberOptions.pad_s`, so both paths decode the same audio. Without it
            (and with one mel frame more than faster-whisper uses) the batched path's
            Mandarin differed from the per-utterance path's on 5-6 of 8 clips even with a full
            window, and its pooled CER ranged from 0.05 better to 0.05 worse by CPU
            (docs/capacity.md, "Mandarin on other CPUs").
        beam_size: Beam width; None takes the transcriber's. The overload policy's cheap
            decode (`CHEAP`) uses 1.
        temperatures: Temperatures tried in turn; None takes the transcriber's. The cheap
            decode uses (0.0,): no sampled retry.
    """

    pad_frames: int = 300
    frame_multiple: int = 100
    min_frames: int = 1500
    without_timestamps: bool = False
    max_tokens_per_second: float = 12.0
    timestamp_slack: float = 0.5
    pad_s: float | None = None
    beam_size: int | None = None
    temperatures: tuple[float, ...] | None = None


#: The decode the overload policy switches to (`qa.overload`): greedy, no sampled retry.
CHEAP = BatchOptions(beam_size=1, temperatures=(0.0,))


def window_frames(content_frames: int, options: BatchOptions) -> int:
    """The padded encoder input length (mel frames) for `content_frames` of audio."""
    frames = content_frames + options.pad_frames
    frames = math.ceil(frames / options.frame_multiple) * options.frame_multiple
    return int(min(WINDOW_FRAMES, max(options.min_frames, frames)))


class BatchTranscriber:
    """Decodes batches of utterances with the model of a loaded `qa.asr.Transcriber`.

    Thread-safe like the model: CTranslate2 queues concurrent calls on its own workers.

    Args:
        transcriber: The loaded per-utterance transcriber whose model, options and guards
            are shared (and whose `transcribe` handles over-long utterances).
        options: Padding and decoding options.
    """

    def __init__(self, transcriber, options: BatchOptions = BatchOptions()) -> None:
        self.transcriber = transcriber
        self.options = options
        self._parts = WhisperParts(transcriber.whisper)
        pad_s = transcriber.options.pad_s if options.pad_s is None else options.pad_s
        self._pad = np.zeros(int(round(pad_s * SAMPLE_RATE)), dtype=np.float32)

    def transcribe(self, utterance: Utterance, language: str | None = None) -> list[Segment]:
        """Transcribes one utterance through the batched path (a batch of one)."""
        return self.transcribe_batch([utterance], language)[0]

    def transcribe_batch(
        self, utterances: Sequence[Utterance], language: str | None = None
    ) -> list[list[Segment]]:
        """Transcribes several utterances together.

        Args:
            utterances: Speech from any calls and speakers (8 kHz ones are resampled here).
            language: `en`, `zh`, ... for all of them; None uses the transcriber's options'
                language, and None there detects it per utterance.

        Returns:
            For each utterance in order, its final segments (at most one when
            `without_timestamps`), guarded and (for Chinese) simplified.
        """
        language = language or self.transcriber.options.language
        results: list[list[Segment]] = [[] for _ in utterances]
        short: list[tuple[int, np.ndarray]] = []
        for i, utterance in enumerate(utterances):
            if len(utterance.pcm) == 0:
                continue
            audio = np.concatenate(
                [self._pad, utterance.pcm16.astype(np.float32) / 32768.0, self._pad]
            )
            features = self._parts.features(audio)
            # Word times need faster-whisper's alignment pass, which this path skips.
            if features.shape[-1] > WINDOW_FRAMES or self.transcriber.options.word_timestamps:
                results[i] = self.transcriber.transcribe(utterance, language)
            else:
                short.append((i, features))
        if short:
            decoded = self._decode([f for _, f in short],
                                   [utterances[i] for i, _ in short], language)
            for (i, _), segments in zip(short, decoded, strict=True):
                results[i] = segments
        return results

    def _decode(
        self, features: list[np.ndarray], utterances: list[Utterance], language: str | None
    ) -> list[list[Segment]]:
        # An utterance's text must not depend on the batch it lands in (which depends on
        # load and on the worker split): each is padded to its own window and gets its own
        # token budget, so the batch is decoded as one sub-batch per window length. Padding
        # every row to the batch's longest window changed borderline utterances' text.
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(features):
            groups.setdefault(window_frames(f.shape[-1], self.options), []).append(i)
        results: list[list[Segment]] = [[] for _ in features]
        for frames, rows in groups.items():
            decoded = self._decode_window(frames, [features[i] for i in rows],
                                          [utterances[i] for i in rows], language)
            for i, segments in zip(rows, decoded, strict=True):
                results[i] = segments
        return results

    def _decode_window(
        self, frames: int, features: list[np.ndarray], utterances: list[Utterance],
        language: str | None,
    ) -> list[list[Segment]]:
        batch = np.zeros((len(features), features[0].shape[0], frames), dtype=np.float32)
        for row, f in zip(batch, features, strict=True):
            row[:, : f.shape[-1]] = f
        encoded = self._parts.encode(batch)
        if language is None and self._parts.multilingual:
            languages = self._parts.detect_language(encoded)
        else:
            languages = [language or "en"] * len(features)
        # The budget follows the window, which every row of this sub-batch shares, so a
        # row's decode stops where it would stop alone.
        max_new = int(32 + self.options.max_tokens_per_second * frames / FRAMES_PER_SECOND)
        # Timestamps count from the start of the padded audio.
        pad_s = len(self._pad) / SAMPLE_RATE
        durations = [u.duration + 2 * pad_s for u in utterances]
        decodes = self._generate(encoded, languages, range(len(features)), max_new, durations)
        return [
            self._segments(utterance, lang, decodes[i])
            for i, (utterance, lang) in enumerate(zip(utterances, languages, strict=True))
        ]

    def _text_tokens(self, tokens: list[int], tokenizer, duration: float) -> list[int]:
        """The text tokens, cut where a timestamp passes the end of the audio: what follows
        is the padding, where a short window makes Whisper repeat itself."""
        if self.options.without_timestamps:
            return tokens
        begin = tokenizer.timestamp_begin
        limit = duration + self.options.timestamp_slack
        out = []
        for token in tokens:
            if token >= begin:
                if (token - begin) * 0.02 > limit:
                    break
                continue
            out.append(token)
        return out

    def _generate(
        self, encoded, languages: list[str], rows, max_new: int, durations: list[float]
    ) -> dict:
        """Greedy-beam decode of `rows`, then one sampled retry of the rows that fail the
        fallback checks, as faster-whisper's `generate_with_fallback` does per utterance."""
        opts = self.transcriber.options
        parts = self._parts
        rows = list(rows)
        best: dict[int, SimpleNamespace] = {}
        beam_size = self.options.beam_size or opts.beam_size
        temperatures = self.options.temperatures or opts.temperatures
        for temperature in temperatures:
            if not rows:
                break
            view = parts.rows(encoded, rows)
            prompts, suppress = [], None
            for r in rows:
                tokenizer = parts.tokenizer(languages[r])
                prompt = list(tokenizer.sot_sequence)
                if self.options.without_timestamps:
                    prompt.append(tokenizer.no_timestamps)
                prompts.append(prompt)
                suppress = suppress or parts.suppressed_tokens(tokenizer)
            if temperature > 0:
                kwargs = {"beam_size": 1, "num_hypotheses": 5, "sampling_topk": 0,
                          "sampling_temperature": temperature}
            else:
                kwargs = {"beam_size": beam_size}
            if not self.options.without_timestamps:
                # faster-whisper's default: the first timestamp within 1 s (50 x 20 ms).
                kwargs["max_initial_timestamp_index"] = 50
            generated = parts.generate(
                view, prompts,
                max_length=min(parts.max_length, len(prompts[0]) + max_new),
                return_scores=True, return_no_speech_prob=True,
                suppress_blank=True, suppress_tokens=suppress, **kwargs,
            )
            retry = []
            for r, result in zip(rows, generated, strict=True):
                tokenizer = parts.tokenizer(languages[r])
                tokens = result.sequences_ids[0]
                text = tokenizer.decode(self._text_tokens(tokens, tokenizer, durations[r]))
                text = text.strip()
                piece = SimpleNamespace(
                    text=text,
                    avg_logprob=result.scores[0] * len(tokens) / (len(tokens) + 1),
                    no_speech_prob=result.no_speech_prob,
                    compression_ratio=parts.compression_ratio(text),
                )
                if r not in best or piece.avg_logprob > best[r].avg_logprob:
                    best[r] = piece
                silent = (piece.no_speech_prob > opts.no_speech_threshold
                          and piece.avg_logprob < opts.log_prob_threshold)
                failed = (piece.compression_ratio > opts.compression_ratio_threshold
                          or piece.avg_logprob < opts.log_prob_threshold)
                if failed and not silent:
                    retry.append(r)
                else:
                    best[r] = piece
            rows = retry
        return best

    def _segments(self, utterance: Utterance, language: str, piece) -> list[Segment]:
        text = to_simplified(piece.text) if language == "zh" else piece.text
        reason = self.transcriber.reject_reason(text, piece)
        if reason:
            log.debug("dropped %r (%s) in %s/%s", text, reason, utterance.call_id,
                      utterance.speaker)
            return []
        return [
            Segment(
                call_id=utterance.call_id,
                speaker=utterance.speaker,
                start=round(utterance.start, 3),
                end=round(utterance.end, 3),
                text=text,
                final=True,
                language=language,
                avg_logprob=piece.avg_logprob,
                no_speech_prob=piece.no_speech_prob,
            )
        ]
