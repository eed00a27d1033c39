"""`qa worker --device cuda` (issue 11, item 6): a GPU worker takes the utterances of many
calls queued in the work stream and decodes them in one batch with CTranslate2 on CUDA in
float16, and what it hears is as good as the CPU path's bounds allow.

These run only where CTranslate2 sees a CUDA device; elsewhere they are skipped with the
reason (CI and the development machines have no GPU)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from qa import textnorm
from qa.cluster.remote import RemoteOptions, RemoteTranscriber
from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from tests.asr.test_accuracy import MAX_WORD_ERRORS
from tests.cluster.test_cluster import Process
from tests.cluster.test_remote import Collector, _all_published


def _cuda_devices() -> int:
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count()
    except Exception:  # a CUDA-less build or a broken driver counts as none
        return 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_cuda_devices() == 0, reason="no CUDA device "
                       "(ctranslate2.get_cuda_device_count() == 0): `qa worker --device "
                       "cuda` is tested only where a GPU is present"),
]

#: Calls the GPU worker gets: read English clips and a two-channel call, each at 16 kHz and as
#: its 8 kHz telephone copy (sent at 8 kHz, resampled on the worker).
CLIPS = ("en_jfk_inaugural", "en_librispeech_1995-1837-0001", "en_librivox_austen_0870",
         "en_stereo_2ch_overlap")


def _files(shared_audio: Path) -> dict[str, tuple[str, Path]]:
    out = {}
    for clip in CLIPS:
        whole = next(shared_audio.glob(f"{clip}*.wav"))
        out[f"gpu-{clip}"] = (clip, whole)
        out[f"gpu-{clip}-8k"] = (clip, next((shared_audio / "8k").glob(f"{clip}*_8k_ulaw.wav")))
    return out


def _references(references: dict, clip: str) -> dict[str, str]:
    """The reference text per speaker of a clip."""
    name = next(n for n in references if n.startswith(clip))
    ref = references[name]
    if "channels" in ref:
        return {"agent": ref["channels"]["left"], "customer": ref["channels"]["right"]}
    return {"unknown": ref["text"]}


def test_gpu_worker_decodes_every_call_in_one_float16_batch(nats_server, shared_audio,
                                                           references, tmp_path):
    files = _files(shared_audio)
    remote = RemoteTranscriber(RemoteOptions(url=nats_server.url, node="gpu-node")).start()
    collector = Collector()
    pipeline = Pipeline(None, PipelineOptions(language="en"), [collector], submit=remote.submit)
    worker = None
    try:
        # Every call's utterances wait in the work stream before the worker starts.
        for call_id, (_, path) in files.items():
            FileSource(FileOptions(path, call_id=call_id)).run(pipeline, threading.Event())
        published = _all_published(pipeline, remote)
        assert published >= len(files)
        worker = Process("worker", "--nats", nats_server.url, "--device", "cuda",
                         "--batch", "32", log=tmp_path / "gpu-worker.log")
        assert pipeline.wait_idle(timeout=180), "".join(worker.lines[-30:])
        # One batch across all the calls (and both sample rates), decoded in float16.
        first = worker.wait_for("decoding a batch of", timeout=1)
        assert f"decoding a batch of {published} utterances" in first
        assert "(cuda, float16)" in worker.wait_for("loaded Whisper model", timeout=1)
    finally:
        pipeline.close()
        remote.close()
        if worker is not None:
            worker.stop()
    for call_id, (clip, _) in files.items():
        summary = collector.summaries[call_id]
        assert summary.dropped_utterances == 0, call_id
        for speaker, reference in _references(references, clip).items():
            text = " ".join(s.text for s in collector.segments
                            if s.call_id == call_id and str(s.speaker) == speaker)
            words = textnorm.english_words(reference)
            errors = round(textnorm.wer(reference, text) * len(words))
            assert errors <= MAX_WORD_ERRORS[clip], (call_id, speaker, text)


def test_rows_of_an_encoder_output_on_the_gpu(shared_audio):
    """A temperature retry decodes some rows of a batch again; on CUDA the encoder output is
    in GPU memory, which numpy cannot read directly."""
    import ctranslate2

    from qa.asr import Transcriber, TranscriberOptions
    from qa.whisper_parts import WhisperParts

    transcriber = Transcriber(TranscriberOptions(device="cuda", compute_type="float16"))
    parts = WhisperParts(transcriber.whisper)
    audio = np.zeros(16000 * 3, dtype=np.float32)
    audio[8000:24000] = np.sin(np.arange(16000) / 9.0) * 0.3
    features = parts.features(audio)
    batch = np.stack([np.zeros_like(features), features])
    encoded = parts.encode(batch)
    assert encoded.device == "cuda"
    row = parts.rows(encoded, [1])
    assert row.shape[0] == 1
    whole = np.asarray(encoded.to_device(ctranslate2.Device.cpu))
    assert np.array_equal(np.asarray(row), whole[1:2])
