"""Real capture: PulseAudio null sink → its monitor → ALSA `pulse` → PortAudio → rings → chunks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from qa._native import capture
from qa._native.capture import CaptureStream
from qa._native.ring import RingBuffer
from qa.sources.soundcard import SoundcardOptions, SoundcardSource, resolve_device
from qa.types import Speaker
from tests.pulse import PulseServer
from tests.sources.soundcard.support import (
    SINK_RATE,
    CollectingSink,
    best_correlation,
    joined,
    resample,
    wait_for_frames,
)

STEREO_CLIP = "en_stereo_2ch_overlap.wav"


def _read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path)) as wav:
        rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    pcm = np.frombuffer(frames, dtype=np.int16).reshape(-1, 2)
    return pcm[:, 0], pcm[:, 1], rate


def test_stereo_clip_played_into_the_sink_is_captured_per_channel(
    pulse: PulseServer, shared_audio: Path
) -> None:
    left, right, clip_rate = _read_stereo(shared_audio / STEREO_CLIP)
    source = SoundcardSource(SoundcardOptions(device="pulse", sample_rate=SINK_RATE))
    assert source.speakers == (Speaker.AGENT, Speaker.CUSTOMER)
    sink, stop = CollectingSink(), threading.Event()
    worker = threading.Thread(target=source.run, args=(sink, stop))
    worker.start()
    try:
        wait_for_frames(lambda: source.stats()["frames"], SINK_RATE // 10)
        started = time.monotonic()
        player = pulse.play(shared_audio / STEREO_CLIP)
        assert player.wait(timeout=20) == 0, player.stderr.read()
        time.sleep(0.3)  # the monitor lags playback by the sink's latency
    finally:
        stop.set()
        worker.join(timeout=10)
    captured_wall = time.monotonic() - started

    assert len(sink.calls) == 1 and sink.calls[0].sample_rate == SINK_RATE
    assert sink.calls[0].channels == (Speaker.AGENT, Speaker.CUSTOMER)
    assert sink.ended == [(sink.calls[0].call_id, "stopped")]
    agent = resample(joined(sink.channel(Speaker.AGENT)), SINK_RATE, clip_rate)
    customer = resample(joined(sink.channel(Speaker.CUSTOMER)), SINK_RATE, clip_rate)

    agent_left, lag_agent = best_correlation(agent, left)
    customer_right, lag_customer = best_correlation(customer, right)
    agent_right, _ = best_correlation(agent, right)
    customer_left, _ = best_correlation(customer, left)
    print(
        f"corr agent~left {agent_left:.3f} customer~right {customer_right:.3f} "
        f"agent~right {agent_right:.3f} customer~left {customer_left:.3f}"
    )
    assert agent_left > 0.9 and customer_right > 0.9
    assert agent_right < 0.5 and customer_left < 0.5, "channels swapped or mixed"
    # Both channels come from one stereo stream: the clip sits at the same place in each.
    assert abs(lag_agent - lag_customer) <= 1
    # The whole clip (5 s) is inside the capture, which spans the time we recorded.
    assert lag_agent + len(left) <= len(agent)
    assert len(agent) / clip_rate >= captured_wall - 0.25
    stats = source.stats()
    assert stats["overflows"] == 0 and stats["ring_dropped_agent"] == 0
    assert stats["gaps_agent"] == 0 and stats["gaps_customer"] == 0


def test_qa_devices_lists_the_pulse_device(pulse: PulseServer, repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qa", "devices"],
        env=pulse.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    pulse_rows = [row for row in rows if row[-1] == "pulse"]
    assert pulse_rows, result.stdout
    index, channels = int(pulse_rows[0][0]), int(pulse_rows[0][1])
    assert channels >= 2
    # sounddevice and our CaptureStream share one libportaudio: same index, same device.
    assert resolve_device("pulse").index == index
    assert capture.device_name(index) == "pulse"


def test_ring_overrun_is_counted_not_silent(pulse: PulseServer) -> None:
    device = resolve_device("pulse").index
    rings = (RingBuffer(480), RingBuffer(480))  # 10 ms at 48 kHz: overruns at once
    with CaptureStream(device, 2, SINK_RATE, rings, 480) as stream:
        stream.start()
        wait_for_frames(lambda: stream.frames, SINK_RATE // 5)
        stream.stop()
        frames = stream.frames
    for ring in rings:
        assert ring.written == frames
        assert ring.dropped == frames - ring.available > 0


def test_stalled_consumer_shows_as_a_gap_on_the_call_clock(pulse: PulseServer) -> None:
    options = SoundcardOptions(device="pulse", sample_rate=SINK_RATE, ring_seconds=0.1)
    source = SoundcardSource(options)
    sink, stop = CollectingSink(delay_first_s=0.5), threading.Event()
    worker = threading.Thread(target=source.run, args=(sink, stop))
    worker.start()
    try:
        assert sink.first_audio.wait(timeout=10)
        wait_for_frames(lambda: source.stats()["frames"], SINK_RATE)
    finally:
        stop.set()
        worker.join(timeout=10)
    stats = source.stats()
    assert stats["ring_dropped_agent"] > 0 and stats["gaps_agent"] >= 1
    assert stats["gap_samples_agent"] == stats["ring_dropped_agent"]
    agent = sink.channel(Speaker.AGENT)
    pairs = zip(agent, agent[1:], strict=False)
    holes = [b.first_sample - (a.first_sample + len(a.pcm)) for a, b in pairs]
    assert sum(holes) == stats["gap_samples_agent"] and min(holes) >= 0


def test_callback_fills_the_ring_while_python_holds_the_gil(pulse: PulseServer) -> None:
    device = resolve_device("pulse").index
    rings = (RingBuffer(4 * SINK_RATE), RingBuffer(4 * SINK_RATE))
    with CaptureStream(device, 2, SINK_RATE, rings, 480) as stream:
        stream.start()
        wait_for_frames(lambda: stream.frames, SINK_RATE // 5)
        interval = sys.getswitchinterval()
        # No other thread may take the GIL for 10 s; the loop below never releases it.
        sys.setswitchinterval(10)
        try:
            before = rings[0].written
            start = time.perf_counter()
            while time.perf_counter() - start < 1.0:
                pass
            during = rings[0].written - before
            held = time.perf_counter() - start
        finally:
            sys.setswitchinterval(interval)
        stream.stop()
    # A callback that needed the GIL would have delivered nothing while the loop ran.
    assert during >= 0.9 * held * SINK_RATE, (during, held)


def test_two_devices_give_one_mono_channel_each(pulse: PulseServer) -> None:
    # ALSA's `default` is PulseAudio here too: two PortAudio streams on two device indices.
    options = SoundcardOptions(device="pulse", second_device="default", sample_rate=SINK_RATE)
    source = SoundcardSource(options)
    assert [d.name for d in source.devices] == ["pulse", "default"]
    sink, stop = CollectingSink(), threading.Event()
    worker = threading.Thread(target=source.run, args=(sink, stop))
    worker.start()
    try:
        wait_for_frames(lambda: source.stats()["frames"], SINK_RATE // 2)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert sink.calls[0].channels == (Speaker.AGENT, Speaker.CUSTOMER)
    assert sink.calls[0].source == "soundcard:pulse+default"
    for speaker in (Speaker.AGENT, Speaker.CUSTOMER):
        assert len(joined(sink.channel(speaker))) > 0
    assert source.stats()["gaps_agent"] == source.stats()["gaps_customer"] == 0


def test_source_spec_names_one_or_two_devices(pulse: PulseServer) -> None:
    from qa.errors import ConfigError
    from qa.sources.spec import open_source

    one = open_source("soundcard:pulse", agent_id="a-1")
    assert [d.name for d in one.devices] == ["pulse"] and one.options.agent_id == "a-1"
    two = open_source("soundcard:pulse+default")
    assert [d.name for d in two.devices] == ["pulse", "default"]
    assert two.name == "soundcard:pulse+default"
    with pytest.raises(ConfigError, match="AGENT\\+CALL"):
        open_source("soundcard:pulse+")
