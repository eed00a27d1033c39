"""One `qa run` with a SIP call (baresip), an AudioSocket call and a Twilio stream at once:
each call's speech is attributed to the right call and party."""

from __future__ import annotations

import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from websockets.sync.client import connect

from qa.textnorm import wer
from tests.pipeline.conftest import no_overload, text_of
from tests.sources.telephony.conftest import clip_8k, read_pcm
from tests.sources.telephony.test_audiosocket import Kind, frame, leg, stream
from tests.sources.telephony.test_wsmedia import twilio_session

LIBRI = "en_librispeech_1995-1837-0001.wav"
AUSTEN = "en_librivox_austen_0870.wav"
JFK = "en_jfk_inaugural_16k_mono.wav"
STEREO = "en_stereo_2ch_overlap.wav"


def channel_8k(shared_audio: Path, name: str, channel: int, out: Path) -> Path:
    path = out / f"{Path(name).stem}_{channel}_8k.wav"
    subprocess.run(["sox", str(shared_audio / name), "-r", "8000", "-b", "16",
                    "-e", "signed-integer", str(path), "remix", str(channel)], check=True)
    return path


@pytest.mark.slow
def test_one_call_of_each_kind_at_once(qa_run, baresip, shared_audio: Path, references: dict,
                                       tmp_path: Path):
    run = qa_run("--source", "sip://127.0.0.1:0?agent=from:^sip:agent-",
                 "--source", "audiosocket://127.0.0.1:0",
                 "--source", "ws://127.0.0.1:0?insecure=1", "--language", "en",
                 *no_overload(tmp_path))
    ready = run.wait_for("ready", timeout=120)[0]
    ports = {name.partition(":")[0]: int(name.rpartition(":")[2]) for name in ready["sources"]}

    sip = baresip(clip_8k(shared_audio, LIBRI, tmp_path), "agent-3")
    sip.dial(f"sip:qa@127.0.0.1:{ports['sip']}")

    def audiosocket() -> None:
        call = uuid.uuid4()
        customer, agent = leg(ports["audiosocket"], call), leg(ports["audiosocket"], call)
        threads = [threading.Thread(target=stream, args=(conn, read_pcm(
            clip_8k(shared_audio, clip, tmp_path)), 2.0))
            for conn, clip in ((customer, AUSTEN), (agent, JFK))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for conn in (customer, agent):
            conn.sendall(frame(Kind.HANGUP))

    def twilio() -> None:
        tracks = {"outbound": read_pcm(channel_8k(shared_audio, STEREO, 1, tmp_path)),
                  "inbound": read_pcm(channel_8k(shared_audio, STEREO, 2, tmp_path))}
        with connect(f"ws://127.0.0.1:{ports['ws']}/twilio") as ws:
            twilio_session(ws, "a-12", tracks)

    senders = [threading.Thread(target=audiosocket), threading.Thread(target=twilio)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    summaries = run.wait_for("summary", timeout=240, count=3)
    assert run.interrupt() == 0

    assert sorted(s["reason"] for s in summaries) == ["hangup"] * 3
    kinds = {m["source"].partition(":")[0]: m["call"]
             for m in run.seen if m["type"] == "call_started"}
    assert set(kinds) == {"sip", "audiosocket", "ws"}
    expected = {
        ("sip", "agent"): references[LIBRI]["text"],
        ("audiosocket", "customer"): references[AUSTEN]["text"],
        ("audiosocket", "agent"): references[JFK]["text"],
        ("ws", "agent"): references[STEREO]["channels"]["left"],
        ("ws", "customer"): references[STEREO]["channels"]["right"],
    }
    for (kind, speaker), reference in expected.items():
        assert wer(reference, text_of(run.seen, kinds[kind], speaker)) <= 0.25, (kind, speaker)
    assert not text_of(run.seen, kinds["sip"], "customer")
