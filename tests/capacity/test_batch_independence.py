"""An utterance's text does not depend on the batch it lands in, nor on the worker split.

Which utterances share a batch depends on load and on how many workers take from the queue,
so if the batch changed the text, a call would be heard (and scored) differently depending on
what else was going on. Two causes were found (docs/capacity.md, "One text per utterance"):
every row of a batch was padded to the batch's longest window, so a short utterance next to
a long one was given other input than alone; and the CTranslate2 threads per decode, which
the worker split changed (2 threads with one worker, 1 with two): oneDNN's multi-threaded
products gave other words run to run ("I am very sorry" / "I'm very sorry"). Now each
utterance is encoded in its own window, and every decode has one thread.
"""

from __future__ import annotations

import numpy as np
import pytest

from qa.batching import BatchTranscriber
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


def test_each_utterance_is_encoded_in_its_own_window_whatever_the_batch(
    scripted, long_utterance, transcriber
):
    """What the model is given for an utterance is the same alone and in a batch: its own
    window. The real model decodes; the encoder's input shapes are recorded on the way."""
    batcher = BatchTranscriber(transcriber)
    shapes: list[tuple[int, int]] = []
    encode = batcher._parts.encode

    def recording(batch):
        shapes.append((batch.shape[0], batch.shape[-1]))
        return encode(batch)

    batcher._parts.encode = recording
    short = [u for u in scripted if u.duration < 10][:3]
    alone = []
    for utterance in (long_utterance, *short):
        batcher.transcribe_batch([utterance], "en")
        alone.append(shapes.pop()[1])
    assert alone[0] > alone[1]  # the long one has a longer window than a short one
    batcher.transcribe_batch([long_utterance, *short], "en")
    encoded = sorted(frames for rows, frames in shapes for _ in range(rows))
    assert encoded == sorted(alone)


def test_words_are_the_same_alone_and_in_any_batch(scripted, long_utterance, batcher):
    short = [u for u in scripted if u.duration < 10]
    assert len(short) >= 8
    alone = [_words(batcher.transcribe(u, "en")) for u in short]
    assert any("sorry" in words for words in alone)
    differ = []
    # All of them in batches of 8 with the long one in front, in two orders.
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

