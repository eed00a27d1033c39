"""Asterisk AudioSocket server (`audiosocket://HOST:PORT[,PORT2]`): one TCP connection per
call leg, legs of one call joined by the UUID their first frame carries.

Asterisk connects once per `AudioSocket(UUID,HOST:PORT)` dialplan call (or `Dial(AudioSocket/
HOST:PORT/UUID)`) and streams that channel's audio as 8 kHz slin frames. Who speaks on a leg:
with two ports, the port (PORT = agent, PORT2 = customer); with one port, the first leg of a
UUID is the customer (the inbound channel reaches the dialplan first) and the second the
agent. A third leg of a UUID is refused.

Call clock: the call starts with the first audio frame of any of its legs (sample 0). A leg's
first frame is placed where the wall clock says it arrived; later frames follow without gaps
(TCP loses nothing), unless the wall clock runs more than `max_lag_s` ahead of the channel
(the peer stopped sending for a while): then the gap becomes silence, counted in
`filled_samples`, so the two channels stay aligned.

The call ends when its last leg ends: a hangup frame or a closed connection (`hangup`), an
error frame (`error: AudioSocket error CODE`), no frame on any leg for `timeout_s`
(`timeout`), or the source stopping (`stopped`). Malformed frames (a bad UUID, audio before
the UUID, an odd byte count, an unknown kind, an oversized frame) are counted and dropped; a
connection is closed only when it cannot go on (no UUID, a bad UUID), and never affects
another.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from qa.errors import ConfigError, SignallingError, SourceError
from qa.ids import new_call_id
from qa.sources.audiosocket.frames import SLIN_RATE, FrameReader, Kind, parse_uuid
from qa.sources.base import SourceSink
from qa.types import AudioChunk, CallInfo, Speaker

log = logging.getLogger("qa.sources.audiosocket")

COUNTERS = (
    "connections", "connections_refused", "frames_received", "audio_frames", "bytes",
    "malformed_frames", "oversized", "unknown_kind", "dtmf", "calls", "legs", "hangups",
    "errors", "timeouts", "filled_samples",
)


@dataclass(frozen=True, slots=True)
class AudioSocketOptions:
    """How `AudioSocketSource` listens.

    Attributes:
        host: Address to bind.
        port: TCP port (agent legs when `customer_port` is set; 0 = any free port).
        customer_port: TCP port of customer legs; None = one port, roles by arrival order.
        agent_id: The agent of every call ('' if unknown).
        timeout_s: A call ends when none of its legs sent a frame for this long.
        uuid_timeout_s: A connection that sends no UUID frame within this is closed.
        max_connections: Connections at once; more are closed on accept.
        max_payload: Largest frame payload taken, in bytes (Asterisk sends 320-byte frames).
        max_lag_s: How far the wall clock may run ahead of a channel before the gap is filled.
    """

    host: str = "127.0.0.1"
    port: int = 9092
    customer_port: int | None = None
    agent_id: str = ""
    timeout_s: float = 10.0
    uuid_timeout_s: float = 5.0
    max_connections: int = 200
    max_payload: int = 16000
    max_lag_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("port", "customer_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ConfigError("audiosocket options", f"not a TCP port: {value}", field=name)
        for name in ("timeout_s", "uuid_timeout_s", "max_lag_s"):
            if getattr(self, name) <= 0:
                raise ConfigError("audiosocket options", "must be > 0", field=name)
        if self.max_connections < 1 or self.max_payload < 320:
            raise ConfigError("audiosocket options", "max_connections >= 1 and "
                              "max_payload >= 320 needed", field="max_payload")


def parse_audiosocket_url(spec: str) -> AudioSocketOptions:
    """Reads `audiosocket://HOST:PORT[,PORT2][?timeout=S&max_connections=N]`.

    Raises:
        ConfigError: Naming the part of `spec` that is wrong.
    """
    parts = urlsplit(spec)
    host, _, ports = parts.netloc.rpartition(":")
    if parts.scheme != "audiosocket" or not host:
        raise ConfigError(spec, "expected audiosocket://HOST:PORT[,PORT2]", field="source")
    try:
        numbers = [int(p) for p in ports.split(",")]
        if len(numbers) > 2:
            raise ValueError("at most two ports")
        values: dict[str, object] = {"host": host, "port": numbers[0],
                                     "customer_port": numbers[1] if len(numbers) == 2 else None}
        for key, value in parse_qsl(parts.query):
            if key == "timeout":
                values["timeout_s"] = float(value)
            elif key == "max_connections":
                values["max_connections"] = int(value)
            else:
                raise ConfigError(spec, f"unknown option {key!r}", field="source")
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(spec, f"bad port or option: {exc}", field="source") from None
    return AudioSocketOptions(**values)  # type: ignore[arg-type]


class _Call:
    def __init__(self, call_id: str, key: str, now: float) -> None:
        self.call_id = call_id
        self.key = key
        self.t0 = now
        self.started = False
        self.legs: list[_Leg] = []
        self.next_sample = {Speaker.AGENT: 0, Speaker.CUSTOMER: 0}
        self.last_frame = now
        self.reasons: list[str] = []


class _Leg:
    def __init__(self, conn: socket.socket, port_speaker: Speaker | None, now: float,
                 max_payload: int) -> None:
        self.conn = conn
        self.port_speaker = port_speaker
        self.opened = now
        self.reader = FrameReader(max_payload)
        self.call: _Call | None = None
        self.speaker: Speaker | None = None
        self.anchored = False


class AudioSocketSource:
    """Serves Asterisk AudioSocket connections (see the module docstring).

    Listening sockets are bound on construction so that `ports` is known before Asterisk
    connects; `run` closes everything when it returns.
    """

    def __init__(self, options: AudioSocketOptions) -> None:
        """Binds the listening socket(s).

        Raises:
            SourceError: When a port cannot be bound.
        """
        self.options = options
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._listeners: list[tuple[socket.socket, Speaker | None]] = []
        try:
            if options.customer_port is None:
                self._listeners.append((self._listen(options.port), None))
            else:
                self._listeners.append((self._listen(options.port), Speaker.AGENT))
                self._listeners.append((self._listen(options.customer_port), Speaker.CUSTOMER))
        except SourceError:
            self.close()
            raise
        self.ports = tuple(sock.getsockname()[1] for sock, _ in self._listeners)
        self.name = f"audiosocket://{options.host}:{','.join(map(str, self.ports))}"
        self._legs: dict[socket.socket, _Leg] = {}
        self._calls: dict[str, _Call] = {}
        self._calls_made = 0
        self._selector: selectors.BaseSelector | None = None
        self._sink: SourceSink | None = None

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.options.host, port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot listen on TCP {self.options.host}:{port}: {exc}") from exc
        return sock

    def close(self) -> None:
        """Closes every socket (`run` does this itself when it returns)."""
        for sock in [s for s, _ in self._listeners] + list(getattr(self, "_legs", {})):
            with contextlib.suppress(OSError):
                sock.close()

    def stats(self) -> Mapping[str, int]:
        """Counters since start: connections, connections_refused, frames_received,
        audio_frames, bytes, malformed_frames, oversized, unknown_kind, dtmf, calls, legs,
        hangups, errors, timeouts, filled_samples."""
        return dict(self._counters)

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Serves until `stop` is set; then ends every call with `stopped` and closes."""
        self._sink = sink
        selector = self._selector = selectors.DefaultSelector()
        for sock, speaker in self._listeners:
            selector.register(sock, selectors.EVENT_READ, ("listen", speaker))
        reason = "stopped"
        try:
            while not stop.is_set():
                for key, _ in selector.select(0.1):
                    kind, speaker = key.data
                    if kind == "listen":
                        self._accept(key.fileobj, speaker)  # type: ignore[arg-type]
                    else:
                        self._read(key.fileobj)  # type: ignore[arg-type]
                self._tick(time.monotonic())
        except BaseException as exc:
            reason = f"error: {exc}"
            raise
        finally:
            for call in list(self._calls.values()):
                self._end_call(call, reason)
            for conn in list(self._legs):
                self._close(conn)
            selector.close()
            self.close()

    # -- connections -------------------------------------------------------------------

    def _accept(self, listener: socket.socket, speaker: Speaker | None) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        if len(self._legs) >= self.options.max_connections:
            self._counters["connections_refused"] += 1
            conn.close()
            return
        self._counters["connections"] += 1
        conn.setblocking(False)
        self._legs[conn] = _Leg(conn, speaker, time.monotonic(), self.options.max_payload)
        self._poller.register(conn, selectors.EVENT_READ, ("conn", None))

    @property
    def _out(self) -> SourceSink:
        """The sink given to `run` (frames are only read while it runs)."""
        assert self._sink is not None, "delivering outside run"
        return self._sink

    @property
    def _poller(self) -> selectors.BaseSelector:
        assert self._selector is not None, "polling outside run"
        return self._selector

    def _close(self, conn: socket.socket) -> None:
        self._legs.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(conn)
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        leg = self._legs.get(conn)
        if leg is None:
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if leg.reader.pending:
                self._malformed(leg, "connection closed inside a frame")
            self._end_leg(leg, "hangup")
            return
        self._counters["bytes"] += len(data)
        skipped = leg.reader.skipped
        frames = leg.reader.feed(data)
        self._counters["oversized"] += leg.reader.skipped - skipped
        now = time.monotonic()
        for item in frames:
            self._counters["frames_received"] += 1
            if leg.conn not in self._legs:
                return
            self._frame(leg, item.kind, item.payload, now)

    def _frame(self, leg: _Leg, kind: Kind | int, payload: bytes, now: float) -> None:
        if kind is Kind.UUID:
            if leg.call is not None:
                self._malformed(leg, "second UUID frame")
                return
            try:
                key = parse_uuid(payload)
            except SignallingError as exc:
                self._malformed(leg, exc.reason)
                self._close(leg.conn)
                return
            self._join(leg, key, now)
            return
        if leg.call is None:
            self._malformed(leg, f"frame of kind {kind:#04x} before the UUID")
            return
        leg.call.last_frame = now
        if kind is Kind.SLIN:
            if len(payload) % 2:
                self._malformed(leg, "odd byte count in slin audio")
                payload = payload[:-1]
            if payload:
                self._counters["audio_frames"] += 1
                self._audio(leg, np.frombuffer(payload, dtype="<i2").astype(np.int16), now)
        elif kind is Kind.DTMF:
            digit = payload[:1].decode("ascii", "replace")
            if len(payload) != 1 or digit not in "0123456789*#ABCD":
                self._malformed(leg, f"bad DTMF payload {payload[:8]!r}")
                return
            self._counters["dtmf"] += 1
            call, speaker = leg.call, leg.speaker
            assert speaker is not None  # joined with its call (checked above)
            if call.started:
                self._out.dtmf(call.call_id, speaker, digit,
                               call.next_sample[speaker] / SLIN_RATE, 0.0)
        elif kind is Kind.HANGUP:
            self._counters["hangups"] += 1
            self._end_leg(leg, "hangup")
        elif kind is Kind.ERROR:
            self._counters["errors"] += 1
            code = f"{payload[0]:#04x}" if payload else "without code"
            self._end_leg(leg, f"error: AudioSocket error {code}")
        else:
            self._counters["unknown_kind"] += 1

    def _malformed(self, leg: _Leg, reason: str) -> None:
        self._counters["malformed_frames"] += 1
        log.info("%s: malformed AudioSocket frame (%s)", self.name, reason)

    # -- calls -------------------------------------------------------------------------

    def _new_call_id(self) -> str:
        """The one place call ids are made: `audiosocket-<port>-<UUIDv7>`, unique across runs."""
        self._calls_made += 1
        return new_call_id(f"audiosocket-{self.ports[0]}")

    def _join(self, leg: _Leg, key: str, now: float) -> None:
        call = self._calls.get(key)
        taken = {other.speaker for other in call.legs} if call else set()
        if leg.port_speaker is not None:
            speaker = leg.port_speaker
        else:
            speaker = Speaker.CUSTOMER if Speaker.CUSTOMER not in taken else Speaker.AGENT
        if speaker in taken:
            log.warning("%s: call %s already has a %s leg; connection refused", self.name,
                        key, speaker)
            self._counters["connections_refused"] += 1
            self._close(leg.conn)
            return
        if call is None:
            call = self._calls[key] = _Call(self._new_call_id(), key, now)
        leg.call, leg.speaker = call, speaker
        call.legs.append(leg)
        call.last_frame = now
        self._counters["legs"] += 1
        log.info("%s: %s leg of %s (UUID %s)", self.name, speaker, call.call_id, key)

    def _audio(self, leg: _Leg, pcm: np.ndarray, now: float) -> None:
        call, speaker = leg.call, leg.speaker
        assert call is not None and speaker is not None  # only joined legs carry audio
        if not call.started:
            call.started = True
            call.t0 = now
            self._counters["calls"] += 1
            self._out.call_started(CallInfo(
                call.call_id, self.options.agent_id, self.name, time.time(),
                (Speaker.AGENT, Speaker.CUSTOMER), SLIN_RATE,
            ))
        position = call.next_sample[speaker]
        wall = round((now - call.t0) * SLIN_RATE) - len(pcm)
        if not leg.anchored or wall - position > self.options.max_lag_s * SLIN_RATE:
            if leg.anchored:
                self._counters["filled_samples"] += max(0, wall - position)
            leg.anchored = True
            position = max(position, wall)
        self._deliver(call, speaker, pcm, position)

    def _deliver(self, call: _Call, speaker: Speaker, pcm: np.ndarray, position: int) -> None:
        start = call.next_sample[speaker]
        if position > start:
            self._out.audio(AudioChunk(call.call_id, speaker,
                                       np.zeros(position - start, np.int16), SLIN_RATE, start))
        self._out.audio(AudioChunk(call.call_id, speaker, pcm, SLIN_RATE, position))
        call.next_sample[speaker] = position + len(pcm)

    def _end_leg(self, leg: _Leg, reason: str) -> None:
        self._close(leg.conn)
        call = leg.call
        if call is None or leg not in call.legs:
            return
        call.legs.remove(leg)
        call.reasons.append(reason)
        if not call.legs:
            # A clean hangup of any leg makes the call's end a hangup; else the first error.
            self._end_call(call, "hangup" if "hangup" in call.reasons else call.reasons[0])

    def _end_call(self, call: _Call, reason: str) -> None:
        self._calls.pop(call.key, None)
        for leg in list(call.legs):
            call.legs.remove(leg)
            self._close(leg.conn)
        if call.started:
            self._out.call_ended(call.call_id, reason)

    def _tick(self, now: float) -> None:
        for leg in list(self._legs.values()):
            if leg.call is None and now - leg.opened >= self.options.uuid_timeout_s:
                self._malformed(leg, "no UUID frame")
                self._close(leg.conn)
        for call in list(self._calls.values()):
            if now - call.last_frame >= self.options.timeout_s:
                self._counters["timeouts"] += 1
                self._end_call(call, "timeout")
