"""The sentence encoder's own forward pass against the package's, with the real weights.

`qa.rules.encoder` encodes all the spans of a segment in one batch and computes each layer
once per distinct token context. The oracle is the package's own `NumpyBackend.encode` called
with one text at a time: every row of a batch must equal it to float rounding, whatever sits
beside the text in the batch (a wrong row order, or a neighbour's tokens or the padding
reaching into a text's n-gram windows, moves a row far beyond the tolerance: two different
texts here are at least 0.05 apart).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from qa.rules import encoder as encoder_module
from qa.rules.encoder import SentenceEncoder, shared_encoder
from qa.rules.intents import spans

DATA = Path(__file__).resolve().parents[1] / "data" / "intents"
#: Float rounding between two summation orders of the same products (measured: 3e-7).
TOLERANCE = 1e-5

TURNS = [
    "Morning, thanks for phoning Acme, Rachel here, how can I help you this morning?",
    "Good morning. Thank you for calling Acme Insurance; my name is Richard. How may I assist "
    "you today?",
    "ive booked the call back for wednesday at two is there anything else you need today or is "
    "that everything for now",
    "I'm so sorry about this, I've put a refund through for the full amount. Anything else?",
    "您好，这里是客服中心，请问有什么可以帮您？我先核实一下您的身份。",
    "这个事情不是我们这边负责的你自己去找银行问一下吧我们这里也没有办法",
    "no no no no no no no no no no",  # one context repeated inside a text
    "OK.",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return shared_encoder()  # the process's one encoder, as the rules use it


def _one_by_one(encoder: SentenceEncoder, texts: list[str]) -> np.ndarray:
    return np.stack([encoder._backend.encode([t])[0] for t in texts])


def _same_rows(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    worst = np.abs(got - want).max(axis=1)
    assert worst.max() <= TOLERANCE, f"rows {np.flatnonzero(worst > TOLERANCE)} differ"


def test_all_spans_of_turns_in_one_batch_equal_the_package_one_text_at_a_time(encoder):
    texts = list(dict.fromkeys(s.text for turn in TURNS for s in spans(turn)))
    assert len(texts) > 30
    encoder.clear_cache()
    got = encoder.encode(texts)
    want = _one_by_one(encoder, texts)
    _same_rows(got, want)
    # The rows are told apart: each is nearest to its own text's reference, by a margin far
    # above the tolerance, so a mixed-up order could not pass.
    sims = got @ want.T
    assert (sims.argmax(axis=1) == np.arange(len(texts))).all()
    off_diagonal = np.abs(got[:, None, :] - want[None, :, :]).max(axis=2)
    np.fill_diagonal(off_diagonal, np.inf)
    assert off_diagonal.min() > 100 * TOLERANCE


def test_a_text_reads_the_same_alone_and_between_others(encoder):
    text = "how can I help you this morning?"
    encoder.clear_cache()
    alone = encoder.encode([text])
    for neighbours in (["Morning, thanks for phoning Acme, Rachel here,", "OK."],
                       [TURNS[1], TURNS[4]],
                       [text + " Anything else?", "Rachel here, " + text]):
        encoder.clear_cache()
        batch = encoder.encode([neighbours[0], text, neighbours[1]])
        _same_rows(batch[1:2], alone)
        _same_rows(batch, _one_by_one(encoder, [neighbours[0], text, neighbours[1]]))


def test_more_text_than_one_batch_is_split_and_kept_in_order(encoder, monkeypatch):
    budget = 24  # tokens: the spans below make several batches, and the longest is over it
    monkeypatch.setattr(encoder_module, "TOKEN_BUDGET", budget)
    texts = list(dict.fromkeys(s.text for turn in TURNS for s in spans(turn)))
    sizes = [len(encoder._backend.sp.encode(t, out_type=int)) + 2 for t in texts]
    assert sum(sizes) > 5 * budget and max(sizes) > budget
    encoder.clear_cache()
    _same_rows(encoder.encode(texts), _one_by_one(encoder, texts))


def test_the_store_of_projected_tokens_starts_afresh_when_full(encoder, monkeypatch):
    store = encoder._forward._slot
    monkeypatch.setattr(encoder._forward, "PROJECTED", 12)  # fewer than one text's tokens
    texts = list(dict.fromkeys(s.text for turn in TURNS for s in spans(turn)))
    store.clear()
    sizes = []
    try:
        for text in texts[:6]:
            encoder.clear_cache()
            _same_rows(encoder.encode([text]), _one_by_one(encoder, [text]))
            sizes.append(len(store))
        assert max(sizes) <= 12 and len(set(sizes)) > 1, sizes  # filled, emptied, refilled
        encoder.clear_cache()
        _same_rows(encoder.encode(texts), _one_by_one(encoder, texts))
    finally:
        store.clear()  # the rows it points at are not kept beyond the 12 slots


def test_duplicates_and_cached_texts_get_the_same_vector(encoder):
    encoder.clear_cache()
    first = encoder.encode(["Anything else?", "OK.", "Anything else?"])
    np.testing.assert_array_equal(first[0], first[2])
    again = encoder.encode(["OK.", "Is that everything?", "Anything else?"])
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])
    _same_rows(again, _one_by_one(encoder, ["OK.", "Is that everything?", "Anything else?"]))
    assert np.allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-6)


def test_the_cache_keeps_the_most_recent_texts(encoder, monkeypatch):
    monkeypatch.setattr(encoder_module, "CACHE_SIZE", 3)
    encoder.clear_cache()
    encoder.encode(["one", "two", "three"])
    encoder.encode(["one"])  # now the most recent
    encoder.encode(["four"])
    assert list(encoder._cache) == ["three", "one", "four"]
    encoder.clear_cache()
    assert not encoder._cache


def _blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_blas_runs_on_the_encoders_threads_while_held_and_is_restored_after(encoder):
    before = _blas_threads()
    assert before, "numpy has a BLAS"
    with encoder.blas():
        assert set(_blas_threads()) == {encoder.threads}
        with encoder.blas():  # nested holders share the limit
            encoder.encode(["Is there anything else I can help with?"])
        assert set(_blas_threads()) == {encoder.threads}
    assert _blas_threads() == before


def test_tokens_cached_per_word_are_the_packages_tokens(encoder):
    texts = ["", "   ", "OK.", "ＡＢＣ full-width, ① circled", "tabs\tand\nnew lines  twice",
             "don't won't can't", "账号123456，请核对。", "mixed 中英文 text 好的 OK"]
    for path in sorted(DATA.glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line)["text"]
                texts += [text, *(s.text for s in spans(text))]
    assert len(texts) > 3000
    reference = encoder._backend.sp
    for text in texts:
        want = reference.encode(text, out_type=int, add_bos=True, add_eos=True)
        assert encoder._tokens(text) == want, text
        assert encoder._tokens(text) == want, text  # and again, from the cache


@pytest.mark.parametrize("limit", [2**62, 1000])  # 1000: codes made dense between offsets
def test_token_contexts_are_the_distinct_windows_of_ids(encoder, monkeypatch, limit):
    monkeypatch.setattr(encoder_module._Contexts, "LIMIT", limit)
    groups = [encoder._tokens(s.text) for turn in TURNS for s in spans(turn)]
    flat = np.asarray([i for g in groups for i in g], dtype=np.int64)
    first = np.repeat(np.cumsum([0] + [len(g) for g in groups[:-1]]), [len(g) for g in groups])
    end = first + np.repeat([len(g) for g in groups], [len(g) for g in groups])
    contexts = encoder_module._Contexts(flat, first, end)
    for a, b in [(0, 0), (0, 1), (1, 1), (0, 2), (2, 2), (4, 4)]:
        windows = [tuple(int(flat[q]) if first[p] <= q < end[p] else -1
                         for q in range(p - a, p + b + 1)) for p in range(len(flat))]
        rep, inverse = contexts.get(a, b)
        assert len(rep) == len(set(windows)) < len(flat)
        for p, code in enumerate(inverse):  # same code exactly when the same window
            assert windows[p] == windows[rep[code]]


def test_warming_with_texts_keeps_their_tokens_and_changes_no_embedding(encoder):
    texts = [s.text for turn in TURNS for s in spans(turn)]
    store = encoder._forward._slot
    store.clear()
    encoder.clear_cache()
    added = encoder.warm(texts)
    assert added == len(store) > 50
    assert encoder.warm(texts) == 0  # all kept already
    encoder.clear_cache()
    _same_rows(encoder.encode(texts), _one_by_one(encoder, texts))
    assert len(store) == added  # encoding them needed no new token


def test_warming_leaves_a_quarter_of_the_store_for_the_calls(encoder, monkeypatch):
    texts = [s.text for turn in TURNS for s in spans(turn)]
    store = encoder._forward._slot
    monkeypatch.setattr(encoder._forward, "PROJECTED", 40)
    store.clear()
    try:
        assert encoder.warm(texts) == 30 == len(store)
        encoder.clear_cache()
        _same_rows(encoder.encode(texts[:3]), _one_by_one(encoder, texts[:3]))
    finally:
        store.clear()
