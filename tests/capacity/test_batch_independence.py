"""An utterance's text does not depend on the batch it lands in, nor on the worker split.

Which utterances share a batch depends on load and on how many workers take from the queue,
so if the batch changed the text, a call would be heard (and scored) differently depending on
what else was going on. Before the fix, every row of a batch was padded to the batch's longest
window: a short utterance decoded next to a long one got a longer window than alone, and the
scripted clean call's "I am very sorry" became "I'm very sorry" (the apology step then missed;
docs/capacity.md, "All cores"). The number of CTranslate2 threads per decode also changes the
text (oneDNN splits its float products by thread), so it is fixed whatever the worker count.
"""

from __future__ import annotations

import numpy as np
import pytest

from qa.batching import window_frames
from qa.monitor import Monitor, MonitorOptions
from qa.offline import cut_file
from qa.pipeline import PipelineOptions
from qa.sources.wav import read_wav
from qa.textnorm import english_words
from qa.types import Speaker, Utterance
from tests.scenarios.calls import render_call


def _text(segments) -> str:
    return " ".join(s.text for s in segments)


def _words(segments) -> list[str]:
    """The words as the rules see them (case and punctuation folded): on one thread the
    engine still flips a final full stop or a comma between runs, never a word here."""
    return english_words(_text(segments), numerals=True)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> list[Utterance]:
    """The utterances of the scripted clean call (agent and customer), cut as live."""
    call = render_call("clean", tmp_path_factory.mktemp("clean"))
    return cut_file(read_wav(call.path), "clean")


@pytest.fixture(scope="module")
def long_utterance(cases) -> Utterance:
    """14 s of read speech: one utterance as long as the endpointer lets one grow, so its
    window is longer than a short utterance's."""
    jfk = next(c for c in cases if c.label == "en_jfk_inaugural").utterances[0]
    austen = next(c for c in cases if c.label == "en_librivox_austen_0870").utterances[0]
    pcm = np.concatenate([jfk.pcm16, np.zeros(4800, np.int16), austen.pcm16])[: 14 * 16000]
    pcm.setflags(write=False)
    return Utterance("long", Speaker.CUSTOMER, 0, len(pcm), pcm)


def test_text_is_the_same_alone_and_in_any_batch(scripted, long_utterance, batcher):
    options = batcher.options
    short = [u for u in scripted if u.duration < 10]
    assert len(short) >= 8
    long_window = window_frames(int(long_utterance.duration * 100) + 60, options)
    assert long_window > window_frames(int(short[0].duration * 100) + 60, options)
    alone = [_words(batcher.transcribe(u, "en")) for u in short]
    assert any("sorry" in words for words in alone)
    differ = []
    # Each short utterance next to the long one (a batch of 2), and all of them in batches
    # of 8 with the long one in front, in two orders.
    for i, utterance in enumerate(short):
        together = batcher.transcribe_batch([long_utterance, utterance], "en")
        if _words(together[1]) != alone[i]:
            differ.append((2, alone[i], _text(together[1])))
    for order in (list(range(len(short))), list(range(len(short)))[::-1]):
        for start in range(0, len(order), 7):
            rows = order[start:start + 7]
            together = batcher.transcribe_batch([long_utterance, *(short[r] for r in rows)],
                                                "en")
            for r, segments in zip(rows, together[1:], strict=True):
                if _words(segments) != alone[r]:
                    differ.append((len(rows) + 1, alone[r], _text(segments)))
    assert not differ, differ


def test_threads_per_decode_do_not_depend_on_the_worker_split(transcriber):
    """`qa run --workers N` gives each decode the same number of threads as the default (and
    as the tests' transcriber), so that changing the split cannot change what is heard."""
    threads = set()
    for workers in (1, 2, 3):
        with Monitor(MonitorOptions(pipeline=PipelineOptions(workers=workers))) as monitor:
            assert monitor.transcriber.options.num_workers == workers
            threads.add(monitor.transcriber.options.cpu_threads)
    assert threads == {transcriber.options.cpu_threads}

