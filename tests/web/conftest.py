"""Fixtures for the workspace tests: a call store filled by the real pipeline (once per
session), a real `qa serve` process over it on a free port, users of every role, and an HTTP
client that logs in like a browser (cookies, CSRF tokens from the pages)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qa.store import CallStore, StoreOptions
from qa.web.workspace import Workspace
from tests.conftest import REPO

PASSWORD = "correct-horse-battery"
#: Who logs in during the tests: username -> (role, agent id). `ann` takes the English call
#: (agent-a), `bo` the Chinese one (agent-b).
USERS = {
    "ann": ("agent", "agent-a"),
    "bo": ("agent", "agent-b"),
    "rita": ("reviewer", ""),
    "ravi": ("reviewer", ""),
    "sam": ("supervisor", ""),
    "ada": ("admin", ""),
}
#: The calls the pipeline stores: (recording, rule pack, language, agent).
SEED = (
    ("examples/sample_call.wav", "examples/rules/en_support.yaml", "en", "agent-a"),
    ("tests/data/rendered/zh_complaint.wav", "examples/rules/zh_support.yaml", "zh", "agent-b"),
)


def qa(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs the `qa` command line of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "qa", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A call store holding the English sample call and a Chinese complaint, run through the
    real pipeline by `qa run` (real Whisper, real rules, recordings kept beside the store), in
    a folder of its own.

    `QA_WEB_SEED=FOLDER` reuses the folder of a store this fixture filled before (to iterate
    on the tests without running Whisper each time); it is copied, never changed."""
    path = tmp_path_factory.mktemp("seed") / "calls.db"
    if os.environ.get("QA_WEB_SEED"):
        shutil.copytree(os.environ["QA_WEB_SEED"], path.parent, dirs_exist_ok=True)
        return path
    for wav, pack, language, agent in SEED:
        done = qa("run", "--source", f"file:{wav}", "--rules", pack, "--language", language,
                  "--agent", agent, "--db", str(path))
        assert done.returncode == 0, done.stderr[-3000:]
    if os.environ.get("QA_WEB_SEED_SAVE"):
        shutil.copytree(path.parent, os.environ["QA_WEB_SEED_SAVE"], dirs_exist_ok=True)
    return path


@dataclass(frozen=True)
class Served:
    """A running `qa serve` and the store it serves."""

    url: str
    db: Path
    calls: dict[str, str]  # agent id -> call id

    def workspace(self) -> Workspace:
        return Workspace(self.db)

    def store(self) -> CallStore:
        return CallStore(StoreOptions(path=self.db))


def start_server(db: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Starts `qa serve --port 0` and returns the process and the URL it listens on."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "qa", "serve", "--db", str(db), "--port", "0", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"qa serve did not start: {line}{proc.stderr.read()[-3000:]}")
    return proc, match.group(1).rstrip("/")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def served(seeded_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`qa serve` over a copy of the seeded store, with the users of `USERS`."""
    folder = tmp_path_factory.mktemp("served")
    db = folder / "calls.db"
    shutil.copytree(seeded_db.parent, folder, dirs_exist_ok=True)
    with CallStore(StoreOptions(path=db)) as store:
        calls = {c.agent_id: c.call_id for c in store.calls()}
    workspace = Workspace(db)
    for name, (role, agent) in USERS.items():
        workspace.add_user(name, role, PASSWORD, agent_id=agent)
    workspace.close()
    proc, url = start_server(db)
    try:
        yield Served(url, db, calls)
    finally:
        stop_server(proc)


class Client:
    """A user agent: keeps cookies, reads the CSRF token from each page it gets."""

    def __init__(self, base: str, context=None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)
        self.csrf = ""

    def request(self, method: str, path: str, data: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict, str]:
        """Sends one request (redirects not followed); returns status, headers, body."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as reply:
                status, head, text = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as exc:
            status, head, text = exc.code, exc.headers, exc.read()
        page = text.decode("utf-8", "replace")
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        if found and path != "/login":
            self.csrf = found.group(1)
        return status, head, page

    def get(self, path: str) -> tuple[int, dict, str]:
        return self.request("GET", path)

    def post(self, path: str, data: dict, csrf: bool = True) -> tuple[int, dict, str]:
        return self.request("POST", path, {**({"csrf": self.csrf} if csrf else {}), **data})

    def login(self, username: str, password: str = PASSWORD) -> tuple[int, dict, str]:
        status, _, page = self.get("/login")
        assert status == 200
        nonce = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        result = self.request("POST", "/login", {"csrf": nonce, "username": username,
                                                 "password": password})
        if result[0] == 303:
            self.get("/calls")  # picks up the session's CSRF token
        return result


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the tests look at each redirect
        return None


@pytest.fixture
def client(served: Served) -> Client:
    return Client(served.url)


def audit_rows(served: Served, **where: str) -> list:
    """The audit log as the store holds it (newest first)."""
    workspace = served.workspace()
    try:
        return workspace.audit_log(**where)
    finally:
        workspace.close()


def wait_until(check, timeout: float = 10.0):
    """Polls `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL server (`tests.pgserver`) for the workspace on a shared store
    (skipped, with the reason, where the server binaries are not installed)."""
    from tests.pgserver import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.close()
