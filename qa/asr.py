"""The transcriber: one faster-whisper model turning `Utterance`s into `Segment`s.

Input is already VAD-gated by the front end, so faster-whisper's own VAD stays off. The
decoding options are bounded for a live pipeline (see `TranscriberOptions`), and guards drop
what Whisper invents on non-speech: segments it thinks hold no speech, segments it is very
unsure of or that repeat themselves, segments without a single word character, and the few
phrases it is known to hallucinate on silence. Chinese comes out in simplified characters.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from qa.errors import DependencyError, ModelError
from qa.models import DEFAULT_MODEL, resolve_model
from qa.textnorm import to_simplified
from qa.types import SAMPLE_RATE, Segment, Utterance, Word

log = logging.getLogger("qa.asr")

#: Phrases Whisper produces on silence or noise (it learnt them from subtitle credits). A
#: segment is dropped only when its whole normalised text is one of these. "You" is what
#: `base` says for digital silence and dither (no_speech_prob 0.73-0.75 but avg_logprob -0.8,
#: so the no-speech rule keeps it; a no-speech cut-off alone cannot: the digits clip, real
#: speech, scores 0.71).
SILENCE_HALLUCINATIONS = (
    "you",
    "thank you for watching",
    "thanks for watching",
    "thank you for watching and see you next time",
    "please subscribe",
    "subtitles by the amara.org community",
    "字幕由amara.org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "谢谢观看",
    "谢谢大家",
    "优优独播剧场——yoyo television series exclusive",
)


@dataclass(frozen=True, slots=True)
class TranscriberOptions:
    """How the model is loaded and how utterances are decoded.

    Attributes:
        model: Model name from `models/manifest.json` or a local model directory.
        device: CTranslate2 device (`cpu` or `cuda`).
        compute_type: CTranslate2 compute type; `int8` is the fast CPU choice.
        cpu_threads: CTranslate2 threads per decode. One, whatever the machine: oneDNN
            splits its float products by thread, and 1 and 2 threads heard 7 of 90 utterances
            of the scripted and shared calls differently ("Great. Thank you." / "Great! Thank
            you!"), so the thread count is fixed and the cores are used by decoding several
            batches at once instead (`num_workers`, `PipelineOptions.workers`;
            docs/capacity.md, "All cores").
        num_workers: Decodes that may run at once when several threads call the model (the
            pipeline's workers); 2 uses both cores of the reference machine.
        language: `en`, `zh`, or None to detect per utterance (costs ~0.7-1.2 s each).
        beam_size: Beam width. On the shared 16 kHz clips beam 5 took 14.7 s against 8.4 s for
            beam 1 but was better where it matters: Chinese mean CER 0.18 against 0.24 (the
            CosyVoice clip 0.07 against 0.21), the digits 0.00 against 0.07; English read
            speech was perfect with both.
        temperatures: Decoding temperatures tried in turn when the output fails the
            compression-ratio or log-prob checks. Bounded to two: faster-whisper's default
            six re-decoded unintelligible audio for 44 s (docs/design.md); one retry at 0.4 still
            rescues a repetitive decode, at most doubling the cost of a bad utterance.
        condition_on_previous_text: Off: a wrong segment must not steer the next one.
        no_speech_threshold: With `log_prob_threshold`, the no-speech guard: a segment whose
            no-speech probability is above this AND whose mean log-probability is below
            `log_prob_threshold` is dropped (Whisper's own silence rule, applied per segment).
        log_prob_threshold: See `no_speech_threshold`; also triggers temperature fallback.
        min_avg_logprob: Any segment less likely than this is dropped, speech or not.
        compression_ratio_threshold: Output more repetitive than this is re-decoded or dropped.
        word_timestamps: Word times (costs an extra alignment pass per utterance).
        drop_hallucinations: Drop segments that are exactly a `SILENCE_HALLUCINATIONS` phrase.
        pad_s: Silence added before and after each utterance before decoding. The endpointer
            cuts close to speech, and Whisper reads the first syllables better after a little
            silence: on the shared clips 0.3 s took pooled Chinese CER from 0.200 to 0.175 (the
            same as faster-whisper on the whole files) and left English WER at 0.023.
    """

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 1
    num_workers: int = 2
    language: str | None = None
    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0, 0.4)
    condition_on_previous_text: bool = False
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    min_avg_logprob: float = -1.5
    compression_ratio_threshold: float = 2.4
    word_timestamps: bool = False
    drop_hallucinations: bool = True
    pad_s: float = 0.3


_PUNCT = re.compile(r"[^\w\s.]|_")


def _normalise_phrase(text: str) -> str:
    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    text = _PUNCT.sub(" ", text)
    return " ".join(text.replace("。", " ").split()).strip(" .")


_HALLUCINATIONS = frozenset(_normalise_phrase(p) for p in SILENCE_HALLUCINATIONS)


def is_hallucination(text: str) -> bool:
    """True when the whole text is a known silence hallucination (after normalisation)."""
    return _normalise_phrase(text) in _HALLUCINATIONS


class Transcriber:
    """One loaded Whisper model, shared by every call and thread.

    `transcribe` may be called from several threads at once: CTranslate2 releases the GIL and
    runs up to `num_workers` decodes in parallel; further callers wait their turn.
    """

    def __init__(self, options: TranscriberOptions = TranscriberOptions()) -> None:
        """Loads the model once.

        Raises:
            ModelError: the model is missing, not installed or fails to load.
            DependencyError: faster-whisper is not installed.
        """
        self.options = options
        self.model_path = resolve_model(options.model)
        # Never let huggingface_hub reach a network: the model is a local directory.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise DependencyError(
                "faster-whisper is not installed: pip install faster-whisper"
            ) from exc
        try:
            self._model = WhisperModel(
                str(self.model_path),
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=options.cpu_threads,
                num_workers=options.num_workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load Whisper model from {self.model_path}: {exc}") from exc
        self._slots = threading.BoundedSemaphore(max(1, options.num_workers))
        log.info(
            "loaded Whisper model %s (%s, %s)",
            self.model_path,
            options.device,
            options.compute_type,
        )

    @property
    def whisper(self):
        """The loaded `faster_whisper.WhisperModel` (for offline comparisons and benchmarks)."""
        return self._model

    def transcribe(self, utterance: Utterance, language: str | None = None) -> list[Segment]:
        """Transcribes one utterance.

        Args:
            utterance: Speech of one speaker (resampled to 16 kHz here when it is not).
            language: `en`, `zh`, ... overriding the options; None uses the options' language
                (and None there detects it).

        Returns:
            Final segments with call-clock times, guarded and (for Chinese) simplified.
        """
        opts = self.options
        if len(utterance.pcm) == 0:
            return []
        pad = np.zeros(int(opts.pad_s * SAMPLE_RATE), dtype=np.float32)
        audio = np.concatenate([pad, utterance.pcm16.astype(np.float32) / 32768.0, pad])
        with self._slots:
            pieces, info = self._model.transcribe(
                audio,
                language=language or opts.language,
                beam_size=opts.beam_size,
                temperature=list(opts.temperatures),
                condition_on_previous_text=opts.condition_on_previous_text,
                no_speech_threshold=opts.no_speech_threshold,
                log_prob_threshold=opts.log_prob_threshold,
                compression_ratio_threshold=opts.compression_ratio_threshold,
                word_timestamps=opts.word_timestamps,
                vad_filter=False,
                initial_prompt=None,
            )
            pieces = list(pieces)
        segments = []
        # Times come back on the padded audio; the pad before the speech is not call time.
        offset = utterance.start - len(pad) / SAMPLE_RATE
        for piece in pieces:
            text = piece.text.strip()
            if info.language == "zh":
                text = to_simplified(text)
            reason = self._reject(text, piece)
            if reason:
                log.debug(
                    "dropped %r (%s) in %s/%s", text, reason, utterance.call_id, utterance.speaker
                )
                continue
            words = tuple(
                Word(
                    min(max(utterance.start, offset + w.start), utterance.end),
                    min(max(utterance.start, offset + w.end), utterance.end),
                    to_simplified(w.word.strip()) if info.language == "zh" else w.word.strip(),
                    w.probability,
                )
                for w in (piece.words or ())
            )
            segments.append(
                Segment(
                    call_id=utterance.call_id,
                    speaker=utterance.speaker,
                    start=round(max(utterance.start, offset + piece.start), 3),
                    end=round(min(utterance.end, offset + piece.end), 3),
                    text=text,
                    words=words,
                    final=True,
                    language=info.language,
                    avg_logprob=piece.avg_logprob,
                    no_speech_prob=piece.no_speech_prob,
                )
            )
        log.debug(
            "%s/%s %.2f-%.2f s: %d segments (%s, p=%.2f)",
            utterance.call_id, utterance.speaker, utterance.start, utterance.end,
            len(segments), info.language, info.language_probability,
        )  # fmt: skip
        return segments

    def reject_reason(self, text: str, piece) -> str:
        """Why a decoded piece is dropped by the guards ('' = kept).

        Args:
            text: The piece's text (Chinese already simplified).
            piece: Anything with `no_speech_prob`, `avg_logprob` and `compression_ratio`
                (a faster-whisper segment, or a batched decode's result).
        """
        return self._reject(text, piece)

    def _reject(self, text: str, piece) -> str:
        opts = self.options
        if not any(c.isalnum() for c in text):
            # "." or "..." with no_speech_prob 0.85 is what base makes of -50 dBFS hiss.
            return "no words"
        if (
            piece.no_speech_prob > opts.no_speech_threshold
            and piece.avg_logprob < opts.log_prob_threshold
        ):
            return f"no speech p={piece.no_speech_prob:.2f}"
        if piece.avg_logprob < opts.min_avg_logprob:
            return f"avg_logprob {piece.avg_logprob:.2f}"
        if piece.compression_ratio > opts.compression_ratio_threshold:
            return f"compression ratio {piece.compression_ratio:.2f}"
        if opts.drop_hallucinations and is_hallucination(text):
            return "known silence hallucination"
        return ""
