"""Hostile and broken inputs to the command line: each is one `qa: error:` line, exit status 2,
at once (no hang on a FIFO, no memory growth on /dev/zero, no traceback from PyYAML, a busy
port found before the model loads).

Every case here printed a traceback, hung or grew without bound before (issue 10, item 10).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "examples" / "rules" / "en_support.yaml"


def qa(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "qa", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def one_error_line(result: subprocess.CompletedProcess, pattern: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("qa: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _dir(p: Path) -> Path:
    p.mkdir()
    return p


def _big(p: Path) -> Path:
    p.write_text("# padding\n" * 110_000)  # 1.1 MB of comments
    return p


def _text(body: str | bytes):
    def make(p: Path) -> Path:
        if isinstance(body, bytes):
            p.write_bytes(body)
        else:
            p.write_text(body, encoding="utf-8")
        return p

    return make


DEEP = "a: " + "[" * 3000 + "]" * 3000 + "\n"
PYTHON_TAG = "name: x\nlanguage: en\ndescription: !!python/object/apply:os.system ['true']\n"
NOT_UTF8 = b"agent: ok\nmodel: base\nlanguage: \xe9n\n"

FILE_CASES = [
    (lambda p: Path("/dev/zero"), "/dev/zero: is a character device, not a regular file"),
    (_fifo, "is a FIFO \\(named pipe\\), not a regular file"),
    (_dir, "is a directory"),
    (_big, "too large: over 1 MiB"),
    (_text(DEEP), ":1: nested deeper than 32 levels"),
    (_text(NOT_UTF8), ":3: not UTF-8 text: byte 0xe9"),
]


@pytest.mark.parametrize(("make", "message"), FILE_CASES + [
    (_text(PYTHON_TAG), ":3: YAML tag '!!python/object/apply:os.system' is not allowed"),
])  # fmt: skip
def test_rule_pack_inputs(tmp_path: Path, make, message) -> None:
    one_error_line(qa("rules", "check", str(make(tmp_path / "pack.yaml")), timeout=20), message)


@pytest.mark.parametrize(("make", "message"), FILE_CASES + [
    (_text("tokens: !!python/object:builtins.dict {}\n"), ":1: YAML tag '!!python/object"),
    (_text("tokens: {[a, b]: secret}\n"), ":1: field 'tokens' invalid value: found unhashable"),
    (_text("? [sources]\n: 1\n"), ":1: a setting name must be a plain word"),
])  # fmt: skip
def test_config_inputs(tmp_path: Path, make, message) -> None:
    config = make(tmp_path / "run.yaml")
    result = qa("run", "--config", str(config), "--source", "file:/nonexistent.wav",
                "--model", "/nonexistent/model", timeout=20)
    one_error_line(result, message)


@pytest.mark.parametrize(("port", "message"), [
    ("99999", "field 'metrics_port' expected a TCP port 0-65535 \\(0 = any free port\\), "
              "got 99999"),
    ("-1", "field 'metrics_port' expected a TCP port 0-65535 \\(0 = any free port\\), got -1"),
])  # fmt: skip
def test_metrics_port_out_of_range(port: str, message: str) -> None:
    result = qa("run", "--source", "file:/nonexistent.wav", "--model", "/nonexistent/model",
                "--metrics-port", port)
    one_error_line(result, message)


@pytest.mark.parametrize("option", ["--metrics-port", "--prompts-port"])
def test_busy_port_is_found_before_the_model_loads(option: str) -> None:
    """The model path is bogus: had the model been loaded first, the error would name it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = qa("run", "--source", "file:/nonexistent.wav", "--model", "/nonexistent/model",
                    option, str(port))
    field = option[2:].replace("-", "_")
    one_error_line(result, f"field '{field}' port {port} on 127.0.0.1 is in use")


@pytest.mark.parametrize(("make", "message"), FILE_CASES[:4] + [
    (_text("call.wav: " + "[" * 100 + "]" * 100 + "\n"), ":1: nested deeper than 32 levels"),
])  # fmt: skip
def test_label_file_inputs(tmp_path: Path, shared_audio: Path, make, message) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    (folder / "call.wav").symlink_to(shared_audio / "en_librivox_austen_0870.wav")
    labels = make(tmp_path / "labels.yaml")
    result = qa("backtest", str(folder), "--rules", str(PACK), "--labels", str(labels),
                "--model", "/nonexistent/model", timeout=20)
    one_error_line(result, message)


def test_port_zero_means_any_free_port_everywhere(shared_audio: Path) -> None:
    """Issue 10 (structure): `--metrics-port 0` switched the exporter off, while port 0 means
    "any free port" for every source. Now it means that here too, and the bound port is
    printed; leaving the option out (or `null` in the config) is what switches it off."""
    import json
    import urllib.request

    result = qa("run", "--source", f"file:{shared_audio / 'en_digits_vosk.wav'}?realtime=1",
                "--language", "en", "--no-store", "--json", "--metrics-port", "0",
                "--prompts-port", "0", timeout=240)
    assert result.returncode == 0, result.stderr
    ready = json.loads(result.stdout.splitlines()[0])
    assert ready["type"] == "ready"
    ports = {what: int(ready[what].split(":")[2].split("/")[0]) for what in ("metrics", "prompts")}
    assert all(port > 0 for port in ports.values()) and len(set(ports.values())) == 2
    with pytest.raises(OSError):  # the process has ended: its exporter is gone with it
        urllib.request.urlopen(ready["metrics"], timeout=2)
