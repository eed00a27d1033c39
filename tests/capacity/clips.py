"""The shared clips cut into utterances by the real front end, with their references."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qa import textnorm
from qa.offline import cut_file
from qa.sources.wav import read_wav
from qa.types import Speaker, Utterance


@dataclass(frozen=True)
class ClipCase:
    """One channel of one clip: its utterances, reference and how it is scored."""

    label: str
    language: str
    reference: str
    numerals: bool
    utterances: tuple[Utterance, ...]

    def tokens(self) -> int:
        """Reference tokens (words, or characters for Chinese)."""
        if self.language == "zh":
            return len(textnorm.chinese_chars(self.reference))
        return len(textnorm.english_words(self.reference, numerals=self.numerals))

    def errors(self, text: str) -> float:
        """Token errors of `text` against the reference (rate times reference length)."""
        rate = textnorm.score(self.language, self.reference, text, numerals=self.numerals)
        return rate * self.tokens()


def cut(path: Path) -> dict[Speaker, list[Utterance]]:
    """Utterances per channel, cut exactly as a live call is (20 ms chunks)."""
    out: dict[Speaker, list[Utterance]] = {}
    for utterance in cut_file(read_wav(path), path.stem):
        out.setdefault(utterance.speaker, []).append(utterance)
    return out


def clip_cases(shared: Path, references: dict) -> list[ClipCase]:
    """Every channel of every shared clip, 16 kHz and 8 kHz µ-law."""
    cases = []
    for name, ref in references.items():
        stem = re.sub(r"_16k_(mono|s16)$", "", Path(name).stem)
        for label, path in ((stem, shared / name), (stem + " 8k", shared / "8k" /
                                                     f"{stem}_8k_ulaw.wav")):
            channels = cut(path)
            if "channels" in ref:
                texts = {Speaker.AGENT: ref["channels"]["left"],
                         Speaker.CUSTOMER: ref["channels"]["right"]}
            else:
                texts = {Speaker.UNKNOWN: ref["text"]}
            for speaker, text in texts.items():
                cases.append(ClipCase(
                    label=f"{label} {speaker}" if len(texts) > 1 else label,
                    language=ref["lang"], reference=text, numerals="digits" in stem,
                    utterances=tuple(channels[speaker]),
                ))
    return cases
