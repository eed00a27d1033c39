"""`qa transcribe` as a user runs it: a subprocess of the installed `qa` command."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from qa import models

REPO = Path(__file__).resolve().parents[2]
QA = REPO / ".venv" / "bin" / "qa"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment with a private model store holding `base` (installed once per module)."""
    root = tmp_path_factory.mktemp("models")
    saved = os.environ.get("QA_MODELS_DIR")
    os.environ["QA_MODELS_DIR"] = str(root)
    try:
        models.install("base", use_pip=False)
    finally:
        if saved is None:
            os.environ.pop("QA_MODELS_DIR")
        else:
            os.environ["QA_MODELS_DIR"] = saved
    # PYTHONPATH: the editable install's finder must not be needed to find the package.
    return {**os.environ, "QA_MODELS_DIR": str(root), "PYTHONPATH": str(REPO)}


def qa(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(QA), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_sample_call_json(env: dict[str, str]) -> None:
    result = qa(env, "transcribe", str(REPO / "examples" / "sample_call.wav"), "--json",
                "--language", "en")  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) >= 10
    assert all(set(r) == {"start", "end", "speaker", "text", "language"} for r in records)
    assert [r["start"] for r in records] == sorted(r["start"] for r in records)
    assert {r["speaker"] for r in records} == {"agent", "customer"}
    agent = " ".join(r["text"] for r in records if r["speaker"] == "agent").lower()
    customer = " ".join(r["text"] for r in records if r["speaker"] == "customer").lower()
    for phrase in ("thank you for calling northwind energy", "sarah", "sorry",
                   "account number", "date of birth", "not my department", "anything else",
                   "goodbye"):  # fmt: skip
        assert phrase in agent, phrase
    assert "charge" in customer and "twice" in customer
    assert records[-1]["end"] <= 52.0 and records[0]["start"] >= 0.0


def test_plain_output_and_mono_speaker(env: dict[str, str], shared_audio: Path) -> None:
    result = qa(env, "transcribe", str(shared_audio / "en_librivox_austen_0870.wav"),
                "--language", "en")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("[0:0") and "] unknown: " in line for line in lines), (
        lines
    )
    assert "dashwood" in result.stdout.lower()


def test_chinese_auto_detected_json_is_not_escaped(env, shared_audio: Path) -> None:
    result = qa(env, "transcribe", str(shared_audio / "zh_funasr_asr_example.wav"), "--json")
    assert result.returncode == 0, result.stderr
    assert "欢迎" in result.stdout  # ensure_ascii=False
    assert {json.loads(line)["language"] for line in result.stdout.splitlines()} == {"zh"}


def test_silence_only_file_yields_no_segments(env, tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(8000)
        wf.writeframes(np.zeros((8000 * 3, 2), dtype="<i2").tobytes())
    result = qa(env, "transcribe", str(path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def _truncated(path: Path) -> Path:
    data = np.zeros(1600, dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 32000) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _gsm(path: Path) -> Path:
    fmt = struct.pack("<HHIIHH", 0x31, 1, 8000, 8000, 1, 8)
    body = (
        b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 800) + b"\xff" * 800
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda p: p, [], "no such file"),
        (lambda p: (p.write_text("just some text\n" * 20), p)[1], [], "not a readable audio file"),
        (_truncated, [], "truncated: data chunk declares 16000 frames but only 1600"),
        (_gsm, [], "unsupported format: GSM 6.10"),
        (lambda p: (p.mkdir(), p)[1], [], "is a directory, not a regular file"),
        (lambda p: (p.write_bytes(b""), p)[1], [], r"empty file \(0 bytes\)"),
        (None, ["--model", "tiny.en"], "model 'tiny.en' is not installed; run: qa models install"),
        (None, ["--model", "/nonexistent/model"], "/nonexistent/model: not a directory"),
    ],
)
def test_bad_input_is_one_line_and_status_2(env, tmp_path, shared_audio, make, extra, message):
    path = make(tmp_path / "in.wav") if make else shared_audio / "en_jfk_inaugural_16k_mono.wav"
    result = qa(env, "transcribe", str(path), *extra)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("qa: error: ")
    assert re.search(message, lines[0]), lines[0]
