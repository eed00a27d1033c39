"""A headless Chromium driven over the Chrome DevTools Protocol, for the agent page test.

Just enough CDP for the test: navigate, evaluate JavaScript, take a screenshot. Chromium picks
a free debugging port and writes it to `DevToolsActivePort` in its profile folder.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import ClientConnection, connect

# Chromium on 2 busy cores can take a few seconds to come up.
_START_TIMEOUT = 30.0
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1200,700", "--remote-debugging-port=0",
)  # fmt: skip


def chromium_binary() -> str:
    """Path of Debian's chromium (or `QA_CHROMIUM`); raises with the install command if absent."""
    found = os.environ.get("QA_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise RuntimeError("chromium not found: apt-get install -y chromium chromium-driver")
    return found


class Browser:
    """One headless Chromium process and a CDP session on its first page."""

    def __init__(self) -> None:
        # Chromium's helper processes can still be writing the profile as the main process
        # exits; a leftover file there must not fail the test that closed the browser.
        self._profile = tempfile.TemporaryDirectory(prefix="qa-chromium-",
                                                    ignore_cleanup_errors=True)
        self._proc = subprocess.Popen(
            [chromium_binary(), *_FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self._session = contextlib.ExitStack()
        try:
            self._ws = self._attach(Path(self._profile.name) / "DevToolsActivePort")
        except BaseException:
            self.close()
            raise

    def _attach(self, port_file: Path) -> ClientConnection:
        deadline = time.monotonic() + _START_TIMEOUT
        while not port_file.is_file() or not port_file.read_text().strip():
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium wrote no DevToolsActivePort")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.load(reply)
        page = next(t for t in targets if t["type"] == "page")
        return self._session.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))

    def call(self, method: str, **params: object) -> dict:
        """Sends one CDP command and returns its result (events in between are ignored)."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv(timeout=_START_TIMEOUT))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, interval: float = 0.02) -> object:
        """Polls an expression until it is truthy; returns its value or raises on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout} s: {expression}")
            time.sleep(interval)

    def navigate(self, url: str, timeout: float = 10.0) -> None:
        """Opens `url` and waits until its document has loaded."""
        self.call("Page.navigate", url=url)
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'", timeout
        )

    def screenshot(self, path: Path) -> None:
        """Saves the page as a PNG."""
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        """Ends the CDP session and this Chromium process, and removes its profile."""
        self._session.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._profile.cleanup()
