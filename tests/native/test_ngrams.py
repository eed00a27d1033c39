"""qa._native.ngrams against the plain-Python hashing it replaced, on the labelled utterances.

The intent classifiers were fitted on features hashed in Python (`zlib.crc32`, a float32 row,
`np.linalg.norm`); the compiled version must give the same buckets and bit-identical values,
or every cached fit and calibrated threshold would drift.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from qa._native.ngrams import crc32, signed_buckets
from qa.rules.intents import NGRAM_DIM, _grams, spans

DATA = Path(__file__).resolve().parents[1] / "data" / "intents"


def _python(grams: set[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The hashing as `qa.rules.intents._buckets` did it in Python (the reference)."""
    row = np.zeros(dim, dtype=np.float32)
    for gram in grams:
        h = zlib.crc32(gram.encode("utf-8"))
        row[h % dim] += 1.0 if (h >> 31) & 1 else -1.0
    norm = float(np.linalg.norm(row))
    if norm > 0:
        row /= norm
    index = np.flatnonzero(row)
    return index, row[index]


def _texts() -> list[str]:
    out: list[str] = []
    for path in sorted(DATA.glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out += [s.text for s in spans(json.loads(line)["text"])]
    return list(dict.fromkeys(out))


@pytest.mark.parametrize("text", ["", "a", "w:hello", "<你好>", "b:no idea", "é\u2581\U00020000"])
def test_crc32_is_zlibs(text: str):
    assert crc32(text) == zlib.crc32(text.encode("utf-8"))


def test_buckets_equal_the_python_hashing_on_every_labelled_span():
    texts = _texts()
    assert len(texts) > 2000
    for text in texts:
        grams = set(_grams(text))
        want_index, want_values = _python(grams, NGRAM_DIM)
        index, values = signed_buckets(grams, NGRAM_DIM)
        assert index.dtype == np.int64 and values.dtype == np.float32
        np.testing.assert_array_equal(index, want_index, err_msg=text)
        np.testing.assert_array_equal(values, want_values, err_msg=text)


def test_cancelling_grams_and_no_grams_give_no_buckets():
    # Two grams landing in one bucket with opposite signs cancel, as in the float row.
    by_bucket: dict[int, dict[int, str]] = {}
    for i in range(5000):
        gram = f"g{i}"
        h = zlib.crc32(gram.encode())
        by_bucket.setdefault(h % 64, {})[(h >> 31) & 1] = gram
    pair = next(set(signs.values()) for signs in by_bucket.values() if len(signs) == 2)
    for grams in (pair, set()):
        index, values = signed_buckets(grams, 64)
        assert len(index) == len(values) == 0
    with pytest.raises(ValueError, match="dim"):
        signed_buckets({"a"}, 0)
