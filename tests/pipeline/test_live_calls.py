"""`qa run` on live telephony and replayed calls: real sockets, real ffmpeg, the real model."""

from __future__ import annotations

from pathlib import Path

from qa.textnorm import wer
from tests.pipeline.conftest import no_overload, rtp_ports, send_rtp, text_of, write_stereo

JFK = "en_jfk_inaugural_16k_mono.wav"
AUSTEN = "en_librivox_austen_0870.wav"
LIBRI = "en_librispeech_1995-1837-0001.wav"


def test_rtp_call_is_transcribed_per_direction(qa_run, shared_audio: Path, references: dict,
                                                tmp_path: Path):
    """ffmpeg sends PCMU (agent) and PCMA (customer) streams; each direction's transcript
    matches its clip, and the call ends by inactivity with its full duration on the clock."""
    run = qa_run("--source", "rtp://127.0.0.1:0,0?timeout=1.5", "--language", "en",
                 "--agent", "a-017", *no_overload(tmp_path))
    ready = run.wait_for("ready", timeout=120)[0]
    [(agent_port, customer_port)] = rtp_ports(ready)
    senders = [
        send_rtp(shared_audio / JFK, agent_port, "pcm_mulaw"),
        send_rtp(shared_audio / AUSTEN, customer_port, "pcm_alaw"),
    ]
    for sender in senders:
        assert sender.wait(timeout=60) == 0, sender.stderr.read()
    [summary] = run.wait_for("summary", timeout=120)
    assert run.interrupt() == 0

    call = summary["call"]
    assert summary["reason"] == "timeout"
    assert summary["agent"] == "a-017"
    # The longer clip (JFK, 11.0 s) sets the call's length; ffmpeg starts both within ~0.3 s.
    assert 10.9 <= summary["duration"] <= 11.6
    assert summary["dropped_utterances"] == 0
    assert wer(references[JFK]["text"], text_of(run.seen, call, "agent")) <= 0.15
    assert wer(references[AUSTEN]["text"], text_of(run.seen, call, "customer")) <= 0.15
    latencies = [m["latency"] for m in run.seen if m["type"] == "segment"]
    assert latencies and all(value > 0 for value in latencies)
    assert 0 < summary["latency_p50"] <= summary["latency_p95"]


def test_four_concurrent_calls_keep_calls_and_speakers_apart(
    qa_run, shared_audio: Path, references: dict, tmp_path: Path
):
    """Two RTP calls and two replayed files at once: every segment lands on the right call
    and the right speaker."""
    ref = {name: references[name]["text"] for name in (JFK, AUSTEN, LIBRI)}
    file_calls = {"a": (JFK, AUSTEN), "b": (LIBRI, JFK)}  # call ids file-a-<uuid>, file-b-<uuid>
    sources = []
    for stem, (left, right) in file_calls.items():
        path = write_stereo(tmp_path / f"{stem}.wav", shared_audio / left, shared_audio / right)
        sources += ["--source", f"file:{path}?realtime=1"]
    run = qa_run(*sources, "--source", "rtp://127.0.0.1:0,0?timeout=1.5",
                 "--source", "rtp://127.0.0.1:0,0?timeout=1.5", "--language", "en",
                 *no_overload(tmp_path))
    ready = run.wait_for("ready", timeout=120)[0]
    pairs = rtp_ports(ready)
    rtp_calls = {pairs[0]: (AUSTEN, LIBRI), pairs[1]: (LIBRI, AUSTEN)}
    senders = []
    for (agent_port, customer_port), (agent_clip, customer_clip) in rtp_calls.items():
        senders.append(send_rtp(shared_audio / agent_clip, agent_port, "pcm_mulaw"))
        senders.append(send_rtp(shared_audio / customer_clip, customer_port, "pcm_alaw"))
    for sender in senders:
        assert sender.wait(timeout=60) == 0
    summaries = run.wait_for("summary", timeout=180, count=4)
    run.interrupt()

    expected: dict[str, tuple[str, str]] = {}
    for summary in summaries:
        call = summary["call"]
        if call.startswith("file-"):
            expected[call] = file_calls[call.split("-")[1]]
        else:
            port = int(call.split("-")[1])
            expected[call] = next(v for k, v in rtp_calls.items() if k[0] == port)
    assert len(expected) == 4
    for call, (agent_clip, customer_clip) in expected.items():
        agent_text = text_of(run.seen, call, "agent")
        customer_text = text_of(run.seen, call, "customer")
        assert wer(ref[agent_clip], agent_text) <= 0.15, (call, agent_text)
        assert wer(ref[customer_clip], customer_text) <= 0.15, (call, customer_text)
