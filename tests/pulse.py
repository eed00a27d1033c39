"""A private PulseAudio server with a null sink: a real sound card on a machine without one.

`PulseServer` starts `pulseaudio` in user mode with its own runtime folder, home and socket, so it
never meets a desktop's server or another test run's. It loads one null sink (`out` by default);
whatever `paplay --device=out` plays comes back on the sink's monitor source `out.monitor`, which
PortAudio records through ALSA's `pulse` device when `PULSE_SOURCE=out.monitor` is in the
environment (docs/design.md, "Facts checked").

PortAudio enumerates its devices once, at the first `Pa_Initialize` of the process, and the ALSA
`pulse` plugin reads `PULSE_SERVER`/`PULSE_SOURCE` from the environment; so `activate()` puts the
server's environment into `os.environ` and re-initialises `sounddevice`'s PortAudio if it was
already loaded, before any capture opens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Seconds to wait for the daemon to answer `pactl info` (it usually takes well under one).
START_TIMEOUT_S = 10.0


class PulseError(RuntimeError):
    """The private PulseAudio server could not be started or driven."""


class PulseServer:
    """One private `pulseaudio` process with a null sink.

    Args:
        sink: Name of the null sink; its monitor source is `<sink>.monitor`.
        rate: Sample rate of the sink (and its monitor).
        channels: Channels of the sink (2: left = agent, right = customer).
    """

    def __init__(self, sink: str = "out", rate: int = 48_000, channels: int = 2) -> None:
        self.sink = sink
        self.rate = rate
        self.channels = channels
        self.root = Path(tempfile.mkdtemp(prefix="qa-pulse-"))
        self.socket = self.root / "runtime" / "native"
        self._proc: subprocess.Popen[bytes] | None = None
        self._saved_env: dict[str, str | None] = {}

    @property
    def monitor(self) -> str:
        """Name of the sink's monitor source."""
        return f"{self.sink}.monitor"

    @property
    def env(self) -> dict[str, str]:
        """The variables a client process needs to reach this server and record the monitor.

        HOME is left alone: clients need no cookie (the socket takes anonymous clients), and
        other parts of the program find their files (models) under the real HOME.
        """
        return {
            "XDG_RUNTIME_DIR": str(self.root / "xdg"),
            "PULSE_RUNTIME_PATH": str(self.root / "runtime"),
            "PULSE_STATE_PATH": str(self.root / "state"),
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_SOURCE": self.monitor,
            "PULSE_SINK": self.sink,
        }

    def client_env(self) -> dict[str, str]:
        """`os.environ` plus `env`, for subprocesses (`paplay`, `qa devices`)."""
        return {**os.environ, **self.env}

    def start(self) -> PulseServer:
        """Starts the daemon and waits until it answers; returns self."""
        for name in ("xdg", "home", "runtime", "state"):
            (self.root / name).mkdir(mode=0o700, exist_ok=True)
        args = [
            "pulseaudio",
            "-n",  # no default.pa: load exactly the modules below
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
            "--log-target=stderr",
            "--log-level=error",
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
            f"--load=module-null-sink sink_name={self.sink} rate={self.rate} "
            f"channels={self.channels} channel_map=front-left,front-right",
        ]
        log = open(self.root / "pulseaudio.log", "wb")  # noqa: SIM115 (owned by the process)
        # The daemon gets a private HOME so it never reads or writes the user's pulse config.
        daemon_env = {**self.client_env(), "HOME": str(self.root / "home")}
        self._proc = subprocess.Popen(args, env=daemon_env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PulseError(f"pulseaudio exited: {self.log_text()}")
            probe = subprocess.run(
                ["pactl", "info"], env=self.client_env(), capture_output=True, timeout=5
            )
            if probe.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise PulseError(f"pulseaudio did not answer within {START_TIMEOUT_S} s")

    def log_text(self) -> str:
        """What the daemon wrote so far (for failure messages)."""
        path = self.root / "pulseaudio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def play(self, wav: Path | str) -> subprocess.Popen[bytes]:
        """Starts `paplay` of a WAV file into the sink; the caller waits on the process."""
        return subprocess.Popen(
            ["paplay", f"--device={self.sink}", str(wav)],
            env=self.client_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def activate(self) -> None:
        """Points this process's PortAudio at the server (see the module docstring)."""
        for key, value in self.env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _reinitialise_sounddevice()

    def deactivate(self) -> None:
        """Restores the environment `activate` changed."""
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        _reinitialise_sounddevice()

    def stop(self) -> None:
        """Stops the daemon and removes its folders."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PulseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reinitialise_sounddevice() -> None:
    # sounddevice initialises PortAudio at import; PortAudio keeps the device list of its first
    # initialisation, so a module imported before the server started would not see `pulse`.
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()
