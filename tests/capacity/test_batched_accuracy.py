"""The batched short-window path against decoding each utterance alone.

Every channel of every shared clip (16 kHz and 8 kHz µ-law), cut by the real front end, is
decoded by `Transcriber.transcribe` one utterance at a time (the baseline) and by
`BatchTranscriber.transcribe_batch` with all of a clip's utterances in one batch.

Whisper's int8 decode flips a token here and there with the CPU's int8 kernels (AVX2,
AVX-512, AVX-512 VNNI): the same path on the same clips differs by a few characters between
machines (docs/capacity.md, "Mandarin on other CPUs"). So the figures are not compared with
a margin that one such flip can break. Instead:

- Same input, same text: with a full 30 s window the batched path must decode exactly what
  the per-utterance path decodes (same silence padding, same mel frames, same prompt and
  options), utterance by utterance. Both run on the same kernels, so this holds on any CPU,
  and it is what breaks when the batched path's input drifts from the per-utterance path's
  (the Mandarin regression of issue 10: no padding, one extra frame).
- The short window costs little: pooled per language (errors summed / reference tokens
  summed), the batched path is within `MARGIN` of decoding alone, a margin wider than the
  spread CPU rounding alone causes, and both are real transcripts.
"""

from __future__ import annotations

import numpy as np
import pytest

from qa.batching import WINDOW_FRAMES, BatchOptions, BatchTranscriber
from qa.types import Speaker, Utterance

#: How far the batched path's pooled error rate may be behind decoding alone. Chinese keeps
#: the capacity issue's 0.03: with the per-utterance path's input the batched path measured
#: -0.042 to +0.008 against alone over three CPU kernel sets (docs/capacity.md, "Mandarin on
#: other CPUs"; 120 characters, one misheard word 0.017), -0.017 on the machine of issue 10
#: item 13's fix. English: +0.005 to +0.027 over those kernel sets (222 words, one word
#: 0.0045), all of it short digit strings that the 15 s window garbles (the full-window test
#: above shows the path itself decodes what the per-utterance path decodes), so its margin
#: allows one more garbled digit string (4 words) than the worst measured.
MARGIN = {"en": 0.045, "zh": 0.03}
#: Both paths must stay real transcripts (measured at most 0.05 WER and 0.21 CER pooled).
CEILING = {"en": 0.10, "zh": 0.30}


def _text(segments) -> str:
    return " ".join(s.text for s in segments)


def _same(text: str) -> str:
    """Whitespace-insensitive: faster-whisper joins its segments, the batch gives one."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def alone(transcriber):
    """`alone(case)`: the case's utterances decoded one by one by the per-utterance path
    (each case decoded once, when first asked for)."""
    done: dict[str, list[str]] = {}

    def texts(case) -> list[str]:
        if case.label not in done:
            done[case.label] = [
                _text(transcriber.transcribe(u, case.language)) for u in case.utterances
            ]
        return done[case.label]

    return texts


@pytest.fixture(scope="module")
def pooled(cases, alone, batcher) -> dict:
    errors: dict[str, dict[str, float]] = {"base": {}, "batched": {}}
    tokens: dict[str, int] = {}
    for case in cases:
        base = " ".join(alone(case))
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
def test_full_window_batch_decodes_what_the_one_by_one_path_decodes(
    cases, alone, transcriber, language
):
    full = BatchTranscriber(transcriber, BatchOptions(min_frames=WINDOW_FRAMES))
    differ = []
    for case in cases:
        if case.language != language:
            continue
        for utterance, text in zip(case.utterances, alone(case), strict=True):
            batched = _text(full.transcribe(utterance, language))
            if _same(batched) != _same(text):
                differ.append((case.label, text, batched))
    assert not differ, f"{len(differ)} utterances differ: {differ}"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_batched_path_is_as_accurate_as_one_by_one(pooled, language):
    base, batched = pooled["base"][language], pooled["batched"][language]
    print(f"\n{language}: batched {batched:.3f}, alone {base:.3f}")
    assert batched <= base + MARGIN[language], (
        f"{language}: batched {batched:.3f}, alone {base:.3f}"
    )
    # And both are real transcripts, not an empty pair that "agrees".
    assert max(base, batched) <= CEILING[language]


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
