"""Fixtures of the cluster tests: a real NATS server with JetStream on file storage, started
in a temporary directory on a free port, that a test can stop and start again on the same
directory and port (a server restart mid-run)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NatsServer:
    """`nats-server -js -sd DIR -a 127.0.0.1 -p PORT` (docs/design.md: starts in under a second)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = directory / "nats.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["nats-server", "-js", "-sd", str(self.directory / "store"), "-a", "127.0.0.1",
                 "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_for: float = 1.0) -> None:
        """Stops the server, keeps it down for `down_for` seconds, starts it again on the same
        store directory and port."""
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture()
def nats_server(tmp_path: Path):
    if shutil.which("nats-server") is None:
        pytest.fail("nats-server is not installed (tools/bootstrap-system.sh installs it)")
    server = NatsServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL server (`tests.pgserver`) for the store the nodes share."""
    from tests.pgserver import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.fail(f"{exc} (tools/bootstrap-system.sh installs postgresql)")
    try:
        yield server
    finally:
        server.close()
