"""The faster-whisper internals that the batched path drives, behind one small interface.

faster-whisper's public API is `WhisperModel.transcribe`, one utterance at a time in a 30 s
window. `qa.batching` needs its parts instead: the CTranslate2 model, the log-Mel feature
extractor, the tokenizer, the suppressed tokens and the compression ratio. Those are not a
public API and have moved between releases, so `qa` reaches them only through this module,
and `pyproject.toml` pins the faster-whisper release they were read from
(`FASTER_WHISPER_VERSION`). A new release is taken by checking these few calls against its
`transcribe.py` and moving the pin; `tests/capacity/test_batched_accuracy.py` then shows
whether the batched path still decodes what the per-utterance path decodes.
"""

from __future__ import annotations

import numpy as np

#: The faster-whisper release these calls follow (pinned in pyproject.toml).
FASTER_WHISPER_VERSION = "1.2.1"


class WhisperParts:
    """The parts of one loaded `faster_whisper.WhisperModel`.

    Args:
        whisper: The loaded model (`qa.asr.Transcriber.whisper`).
    """

    def __init__(self, whisper) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        self._whisper = whisper
        self._model = whisper.model  # ctranslate2.models.Whisper
        self._tokenizer_cls = Tokenizer
        self._suppressed = get_suppressed_tokens
        self.compression_ratio = get_compression_ratio
        #: Whether the model knows languages other than English.
        self.multilingual: bool = self._model.is_multilingual
        #: Longest token sequence the decoder may produce (prompt included).
        self.max_length: int = whisper.max_length
        self._tokenizers: dict[str | None, object] = {}

    def features(self, audio: np.ndarray) -> np.ndarray:
        """The log-Mel frames faster-whisper gives its encoder for `audio` (16 kHz float32).

        Its extractor appends 160 zero samples and so one frame past the audio, which
        `WhisperModel.transcribe` never encodes (its `content_frames`); one frame more is
        enough to change a Mandarin decode, so it is dropped here too.
        """
        return self._whisper.feature_extractor(audio)[:, :-1]

    def tokenizer(self, language: str | None):
        """faster-whisper's tokenizer for transcribing `language` (made once per language)."""
        if language not in self._tokenizers:
            self._tokenizers[language] = self._tokenizer_cls(
                self._whisper.hf_tokenizer, self.multilingual, task="transcribe",
                language=language if self.multilingual else "en",
            )
        return self._tokenizers[language]

    def suppressed_tokens(self, tokenizer) -> list[int]:
        """The tokens faster-whisper suppresses by default (`suppress_tokens=[-1]`)."""
        return list(self._suppressed(tokenizer, [-1]))

    def encode(self, batch: np.ndarray):
        """Encoder output of a (batch, mels, frames) float32 array."""
        import ctranslate2

        return self._model.encode(ctranslate2.StorageView.from_array(batch))

    def rows(self, encoded, rows: list[int]):
        """The encoder output of some rows of a batch (for a retry of those rows)."""
        import ctranslate2

        if rows == list(range(encoded.shape[0])):
            return encoded
        if encoded.device != "cpu":  # numpy reads host memory only (a GPU worker's output)
            encoded = encoded.to_device(ctranslate2.Device.cpu)
        array = np.asarray(encoded)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[rows]))

    def detect_language(self, encoded) -> list[str]:
        """The most likely language code of each row of an encoder output."""
        return [r[0][0][2:-2] for r in self._model.detect_language(encoded)]

    def generate(self, encoded, prompts: list[list[int]], **options):
        """CTranslate2's `Whisper.generate` (one result per row)."""
        return self._model.generate(encoded, prompts, **options)
