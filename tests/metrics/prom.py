"""A real Prometheus server on loopback for tests: scrapes one target every second.

    with PromServer("127.0.0.1:9464") as prom:
        prom.wait_for("qa_calls_started_total", lambda v: v >= 1)
        value = prom.query("sum(qa_calls_active)")

Each server gets its own temporary config and data folder and a free port; `stop` ends the
process and removes the folder. Queries go through the HTTP API with urllib.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

#: Seconds to wait for the server to answer /-/ready (it starts in about a second here).
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PromServer:
    """A `prometheus` process scraping `target` (`host:port`) every second.

    Args:
        target: The exporter to scrape, `host:port` (ignored with `config`).
        job: The job label of the scraped series.
        binary: The prometheus executable.
        rule_files: Rule files to load (copied beside the config).
        exemplars: Store scraped exemplars (`exemplar-storage`), for `exemplars()`.
        config: A shipped Prometheus config (grafana/prometheus/prometheus.yml) to run as it
            is, with its rule files and file-based discovery; only the intervals are made 1 s.
        nodes: With `config`, the discovery files to write into its `nodes/` folder: file
            name to the YAML text (target groups).
    """

    def __init__(self, target: str, job: str = "qa", binary: str = "prometheus",
                 rule_files: tuple[Path, ...] = (), exemplars: bool = True,
                 config: Path | None = None, nodes: dict[str, str] | None = None) -> None:
        self.target = target
        self.config = config
        self.nodes = nodes or {}
        self.job = job
        self.binary = binary
        self.rule_files = rule_files
        self.exemplars_on = exemplars
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The server's base address."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PromServer:
        """Writes the config, starts the server and waits until it is ready."""
        if shutil.which(self.binary) is None:
            raise RuntimeError(f"{self.binary} not found (Debian package: prometheus)")
        self._dir = Path(tempfile.mkdtemp(prefix="qa-prom-"))
        if self.config is not None:
            self._write_shipped_config()
        else:
            self._write_config()
        self.port = free_port()
        self._log = open(self._dir / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        command = [self.binary, f"--config.file={self._dir / 'prometheus.yml'}",
                   f"--storage.tsdb.path={self._dir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        if self.exemplars_on:
            command.append("--enable-feature=exemplar-storage")
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self._proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {READY_TIMEOUT} s")

    def _write_config(self) -> None:
        assert self._dir is not None
        rules = []
        for rule_file in self.rule_files:
            shutil.copy(rule_file, self._dir / rule_file.name)
            rules.append(rule_file.name)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "scrape_configs": [{"job_name": self.job,
                                "static_configs": [{"targets": [self.target]}]}],
        }
        # JSON is valid YAML, so no YAML writer is needed here.
        (self._dir / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")

    def _write_shipped_config(self) -> None:
        import yaml

        assert self.config is not None and self._dir is not None
        config = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        for rule_file in config.get("rule_files", []):
            shutil.copy(self.config.parent / rule_file, self._dir / rule_file)
        (self._dir / "nodes").mkdir()
        for name, text in self.nodes.items():
            (self._dir / "nodes" / name).write_text(text, encoding="utf-8")
        (self._dir / "prometheus.yml").write_text(json.dumps(config), encoding="utf-8")

    def log(self) -> str:
        """What the server logged so far."""
        if self._dir is None or not (self._dir / "prometheus.log").is_file():
            return ""
        return (self._dir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: str) -> dict:
        """GETs `/api/v1/<path>` and returns its `data` (raises on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus API error: {body}")
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Evaluates an instant query; returns (labels, value) per series (a scalar as one)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def value(self, expr: str) -> float | None:
        """The single value of a query, or None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"{expr!r} returned {len(result)} series")
        return result[0][1]

    def exemplars(self, expr: str, since: float = 3600.0) -> list[dict[str, str]]:
        """Label sets of the exemplars stored for the series of `expr` in the last `since` s."""
        now = time.time()
        data = self.api("query_exemplars", query=expr, start=str(now - since), end=str(now))
        return [ex["labels"] for series in data for ex in series["exemplars"]]

    def alerts(self) -> list[dict]:
        """The alerts currently pending or firing."""
        return self.api("alerts")["alerts"]

    def rules(self) -> list[str]:
        """Names of the loaded alerting and recording rules."""
        groups = self.api("rules")["groups"]
        return [rule["name"] for group in groups for rule in group["rules"]]

    def wait_for(self, expr: str, ok: Callable[[float], bool], timeout: float = 20.0) -> float:
        """Polls `expr` until its single value satisfies `ok`; returns that value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and ok(last):
                return last
            time.sleep(0.25)
        raise TimeoutError(f"{expr!r} still {last} after {timeout} s")

    def stop(self) -> None:
        """Ends the server and removes its folder."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PromServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
