"""A private PostgreSQL server in a temporary folder: the shared call store, for tests.

`PostgresServer` runs `initdb` and `postgres` from the Debian packages (found on PATH or under
`/usr/lib/postgresql/*/bin`) on a free TCP port of 127.0.0.1, with its unix socket in its own
folder, so it never meets a system server or another test run's. As root (PostgreSQL refuses to
run as root) the server runs as the `postgres` user. Durability is traded for speed (no fsync):
a test server holds nothing worth keeping.

Clients log in over TCP as `qa` with a password (scram-sha-256, as a real deployment would),
so tests see a URL with a password in it; the superuser reaches the server through the socket.
`database()` creates a fresh database per test. `stop()`/`start()` restart the server on the
same port and data, as an operator's restart would.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: Seconds to wait for the server to accept connections (a cold start takes about one).
START_TIMEOUT_S = 30.0
#: The client login's password; tests check that it never shows in output or logs.
PASSWORD = "pg-Secret-7d41"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed (or cannot run here)."""


def find_binaries() -> Path:
    """The folder holding `initdb` and `postgres` (the newest installed version)."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "postgres").exists():
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not versions:
        raise PostgresUnavailable("PostgreSQL server binaries not found (install the Debian "
                                  "package 'postgresql': tools/bootstrap-system.sh)")
    return Path(versions[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One private `postgres` process and its data folder."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="qa-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.socket_dir.mkdir()
        self.port = _free_port()
        self.log = self.root / "server.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and no 'postgres' user to run the "
                                          "server as") from None
            self._user = "postgres"
            for path in (self.root, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._process: subprocess.Popen | None = None
        self._databases = 0
        pwfile = self.root / "pw"
        pwfile.write_text("unused\n")
        if self._user:
            os.chown(pwfile, pwd.getpwnam(self._user).pw_uid, -1)
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
             "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
             f"--pwfile={pwfile}"],
            check=True, capture_output=True, user=self._user, timeout=120,
        )
        self.start()
        self.admin(f"CREATE ROLE qa LOGIN CREATEDB PASSWORD '{PASSWORD}'")

    def start(self) -> None:
        """Starts the server (again) and waits until it accepts connections."""
        log = open(self.log, "ab")  # noqa: SIM115 - the server writes to it until it stops
        self._process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "shared_buffers=16MB", "-c", "max_connections=60"],
            stdout=log, stderr=subprocess.STDOUT, user=self._user, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            try:
                self.admin("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stops the server (fast shutdown: clients are disconnected, as in a restart)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def admin(self, sql: str) -> list[tuple]:
        """Runs one statement as the superuser (through the socket) and returns its rows."""
        import psycopg

        with psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                             dbname="postgres", autocommit=True, connect_timeout=2) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def url(self, database: str) -> str:
        """The client URL of `database` (with the password in it)."""
        return f"postgresql://qa:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database owned by `qa`; returns its URL."""
        self._databases += 1
        name = f"qa_test_{os.getpid()}_{self._databases}"
        self.admin(f"CREATE DATABASE {name} OWNER qa")
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
