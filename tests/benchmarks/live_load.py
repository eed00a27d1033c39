"""Live load: N two-channel calls replayed in real time through one pipeline.

Each call is built from the shared English clips with turn-taking (agent, pause, customer,
pause, agent ...), and the calls start staggered, as on a real floor. For each N it reports
the end-of-speech-to-final-text latency (p50/p95), the process CPU use and the WER.

    .venv/bin/python -m tests.benchmarks.live_load --calls 1,2,4,6,8
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qa.pipeline import Pipeline, PipelineOptions
from qa.sources.file import FileOptions, FileSource
from qa.textnorm import wer
from qa.types import CallSummary, PipelineListener, Segment

#: (speaker, clip) turns of one call; references from the shared references.json.
TURNS = (
    ("agent", "en_librivox_austen_0870.wav"),
    ("customer", "en_jfk_inaugural_16k_mono.wav"),
    ("agent", "en_librispeech_1995-1837-0001.wav"),
)
PAUSE_S = 0.8  # between turns: a realistic gap, longer than the endpointer's hangover
STAGGER_S = 1.3  # between call starts, so utterances do not all end at the same instant


@dataclass(frozen=True)
class LoadResult:
    calls: int
    utterances: int
    latency_p50: float
    latency_p95: float
    cpu_percent: float
    wer: float
    dropped: int


def build_call(shared_audio: Path, path: Path) -> tuple[Path, dict[str, str]]:
    """Writes the turn-taking call as a stereo WAV; returns it and the reference per speaker."""
    refs = json.loads((shared_audio / "references.json").read_text(encoding="utf-8"))
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    text = {"agent": [], "customer": []}
    pause = np.zeros(int(PAUSE_S * 16000), dtype="<i2")
    for speaker, clip in TURNS:
        with wave.open(str(shared_audio / clip)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        silent = np.zeros_like(pcm)
        left += [pcm if speaker == "agent" else silent, pause]
        right += [pcm if speaker == "customer" else silent, pause]
        text[speaker].append(refs[clip]["text"])
    stereo = np.stack([np.concatenate(left), np.concatenate(right)], axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(stereo.astype("<i2").tobytes())
    return path, {speaker: " ".join(parts) for speaker, parts in text.items()}


class _Collect(PipelineListener):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.segments: list[Segment] = []
        self.summaries: list[CallSummary] = []

    def segment(self, segment: Segment, latency: float) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.segments.append(segment)

    def call_ended(self, summary: CallSummary) -> None:
        with self.lock:
            self.summaries.append(summary)


def run_load(
    transcriber,
    call_wav: Path,
    reference: dict[str, str],
    calls: int,
    make_pipeline: Callable[[list[PipelineListener]], Pipeline] | None = None,
    stagger: float = STAGGER_S,
) -> LoadResult:
    """Replays `calls` copies of the call in real time, started `stagger` seconds apart (0:
    all at once, the worst case: every call's utterances end at the same moments); measures
    latency and CPU.

    `make_pipeline` builds the sink under test from the listeners (anything with the
    `Pipeline`'s source-sink methods, `wait_idle` and `close`); the default is a `Pipeline`
    decoding each utterance alone with `transcriber.transcribe`.
    """
    collect = _Collect()
    if make_pipeline is None:
        pipeline = Pipeline(transcriber.transcribe, PipelineOptions(language="en"), [collect])
    else:
        pipeline = make_pipeline([collect])
    stop = threading.Event()
    sources = [
        FileSource(FileOptions(call_wav, realtime=True, call_id=f"load-{i}")) for i in range(calls)
    ]

    def play(index: int, source: FileSource) -> None:
        time.sleep(index * stagger)
        source.run(pipeline, stop)

    threads = [threading.Thread(target=play, args=(i, s)) for i, s in enumerate(sources)]
    cpu0, wall0 = time.process_time(), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipeline.wait_idle()
    pipeline.close()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    errors = []
    for i in range(calls):
        for speaker, text in reference.items():
            said = " ".join(
                s.text for s in sorted(collect.segments, key=lambda s: s.start)
                if s.call_id == f"load-{i}" and s.speaker == speaker
            )
            errors.append(wer(text, said))
    latencies = np.asarray(collect.latencies or [float("nan")])
    return LoadResult(
        calls=calls,
        utterances=sum(s.utterances for s in collect.summaries),
        latency_p50=float(np.percentile(latencies, 50)),
        latency_p95=float(np.percentile(latencies, 95)),
        cpu_percent=100.0 * cpu / wall / (os.cpu_count() or 1),
        wer=float(np.mean(errors)),
        dropped=sum(s.dropped_utterances for s in collect.summaries),
    )


def main() -> None:
    from qa.asr import Transcriber, TranscriberOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,2,4,6,8")
    parser.add_argument("--target", type=float, default=2.5, help="p95 latency goal, seconds")
    parser.add_argument("--shared-audio", type=Path,
                        default=Path(__file__).resolve().parents[3] / "shared" / "audio")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    import tempfile

    transcriber = Transcriber(TranscriberOptions(language="en"))
    with tempfile.TemporaryDirectory() as tmp:
        call_wav, reference = build_call(args.shared_audio, Path(tmp) / "call.wav")
        results = []
        print("calls  utterances  p50 s  p95 s  cpu %   WER   dropped", flush=True)
        for n in (int(x) for x in args.calls.split(",")):
            r = run_load(transcriber, call_wav, reference, n)
            results.append(r)
            print(f"{r.calls:5d}  {r.utterances:10d}  {r.latency_p50:5.2f}  {r.latency_p95:5.2f}"
                  f"  {r.cpu_percent:5.1f}  {r.wer:5.3f}  {r.dropped:7d}", flush=True)
    meeting = [r.calls for r in results if r.latency_p95 <= args.target and r.dropped == 0]
    print(f"largest N with p95 <= {args.target} s: {max(meeting) if meeting else 0}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
