"""A source that raises mid-call ends its calls; the run finishes instead of waiting for ever."""

from __future__ import annotations

import threading
from pathlib import Path

from qa.monitor import Monitor, MonitorOptions
from qa.sources.file import FileOptions, FileSource
from qa.types import CallSummary, PipelineListener, Segment


class CrashingFile(FileSource):
    """The real file source, with a fault injected: its sink raises after two seconds of
    audio, as a source whose socket or device breaks mid-call would (no real source can be
    made to fail on demand)."""

    def run(self, sink, stop: threading.Event) -> None:
        class Breaking:
            def __getattr__(self, name):
                return getattr(sink, name)

            def audio(self, chunk):
                if chunk.first_sample > 2 * chunk.sample_rate:
                    raise OSError("injected: the device went away")
                sink.audio(chunk)

        super().run(Breaking(), stop)


class Results(PipelineListener):
    def __init__(self) -> None:
        self.summaries: list[CallSummary] = []
        self.segments: list[Segment] = []

    def segment(self, segment: Segment, latency: float) -> None:
        self.segments.append(segment)

    def call_ended(self, summary: CallSummary) -> None:
        self.summaries.append(summary)


def test_a_crashing_source_ends_its_call_and_the_run(transcriber, shared_audio: Path):
    """Before: the call stayed open, the pipeline never went idle and `qa run` hung until
    killed. Now the call ends with the source's error and is summarised, and the run ends
    by itself, with the healthy source's call complete."""
    results = Results()
    crashing = CrashingFile(FileOptions(shared_audio / "en_librivox_austen_0870.wav",
                                        call_id="broken"))
    healthy = FileSource(FileOptions(shared_audio / "en_digits_vosk.wav", call_id="fine"))
    done = threading.Event()
    with Monitor(MonitorOptions(), [results], transcriber=transcriber) as monitor:
        runner = threading.Thread(target=lambda: (monitor.run([crashing, healthy]), done.set()))
        runner.start()
        runner.join(timeout=120)
    assert done.is_set(), "the run never finished: the crashed source's call stayed open"
    reasons = {s.call_id: s.reason for s in results.summaries}
    assert set(reasons) == {"broken", "fine"}
    assert reasons["broken"].startswith("error: source failed: OSError")
    assert reasons["fine"] == "end of file"
    assert any(s.call_id == "fine" for s in results.segments)
