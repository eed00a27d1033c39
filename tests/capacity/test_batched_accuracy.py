"""The batched short-window path against decoding each utterance alone.

Every channel of every shared clip (16 kHz and 8 kHz µ-law), cut by the real front end, is
decoded by `Transcriber.transcribe` one utterance at a time (the baseline) and by
`BatchTranscriber.transcribe_batch` with all of a clip's utterances in one batch. Pooled per
language (errors summed / reference tokens summed), the batched path may be at most 0.03
behind (the capacity issue's tolerance: WER for English, CER for Chinese).
"""

from __future__ import annotations

import numpy as np
import pytest

from qa.batching import WINDOW_FRAMES
from qa.types import Speaker, Utterance

TOLERANCE = 0.03


def _text(segments) -> str:
    return " ".join(s.text for s in segments)


@pytest.fixture(scope="module")
def pooled(cases, transcriber, batcher) -> dict:
    errors: dict[str, dict[str, float]] = {"base": {}, "batched": {}}
    tokens: dict[str, int] = {}
    for case in cases:
        base = " ".join(_text(transcriber.transcribe(u, case.language)) for u in case.utterances)
        batched = " ".join(
            _text(s) for s in batcher.transcribe_batch(case.utterances, case.language)
        )
        for name, text in (("base", base), ("batched", batched)):
            errors[name][case.language] = errors[name].get(case.language, 0) + case.errors(text)
        tokens[case.language] = tokens.get(case.language, 0) + case.tokens()
    return {
        name: {lang: errors[name][lang] / tokens[lang] for lang in tokens} for name in errors
    }


@pytest.mark.parametrize("language", ["en", "zh"])
def test_batched_path_is_as_accurate_as_one_by_one(pooled, language):
    base, batched = pooled["base"][language], pooled["batched"][language]
    assert batched <= base + TOLERANCE, f"{language}: batched {batched:.3f}, alone {base:.3f}"
    # And both are real transcripts, not an empty pair that "agrees".
    assert batched < 0.3


def test_batch_of_many_gives_the_text_of_batches_of_one(cases, batcher):
    english = [u for c in cases if c.language == "en" and "8k" not in c.label
               for u in c.utterances]
    together = [_text(s) for s in batcher.transcribe_batch(english, "en")]
    alone = [_text(batcher.transcribe(u, "en")) for u in english]
    assert len(english) >= 6
    assert all(together)
    same = sum(a == b for a, b in zip(together, alone, strict=True))
    # int8 matrix products may round differently by batch shape; the text must not change
    # on more than one utterance.
    assert same >= len(english) - 1, list(zip(together, alone, strict=True))


def test_utterance_longer_than_the_window_is_transcribed_whole(cases, batcher):
    labels = ("en_librivox_austen_0870", "en_jfk_inaugural", "en_librispeech_1995-1837-0001",
              "en_digits_vosk", "en_librispeech_1995-1837-0001 8k")
    gap = np.zeros(4800, dtype=np.int16)  # 0.3 s between the read sentences
    parts = [p for label in labels for c in cases if c.label == label
             for u in c.utterances for p in (u.pcm16, gap)]
    pcm = np.concatenate(parts)
    assert len(pcm) // 160 > WINDOW_FRAMES + 500  # well past Whisper's 30 s window
    pcm.setflags(write=False)
    long = Utterance("long", Speaker.AGENT, 16000, 16000 + len(pcm), pcm)
    short = next(c for c in cases if c.label == "en_jfk_inaugural").utterances[0]
    long_segments, short_segments = batcher.transcribe_batch([long, short], "en")
    text = _text(long_segments).lower()
    # The first sentence, and the last one, which lies past the first 30 s window.
    assert "fellow americans" in text
    assert text.rstrip(". ").endswith("dreams built around it"), text
    assert long.start <= long_segments[0].start and long_segments[-1].end <= long.end + 0.01
    assert "fellow americans" in _text(short_segments).lower()
