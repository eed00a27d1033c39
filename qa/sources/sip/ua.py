"""A SIP user agent that answers calls and hands their audio to the pipeline (`sip://HOST:PORT`).

A PBX, an SBC or a softphone sends the audio it wants checked by calling this agent: an
Asterisk `Dial`/ChanSpy leg, a FreeSWITCH eavesdrop, a softphone. Each INVITE is one *leg*: one
RTP stream of one party's voice. The agent answers (UDP and TCP on the same port) with a
receive-only SDP answer on a fresh RTP port of its own address, and the leg's audio goes
through the RTP receiver of `qa.sources.rtp` (jitter buffer, loss, G.711, RFC 4733 DTMF).

Who is speaking on a leg is decided by `SipOptions.rules`, tried in order against the INVITE
(From, To, the Request-URI or any header); the first that matches names the speaker, else
`default_speaker`. Legs whose INVITEs carry the same value of `join_header` are one call, on
the channels their rules name; a leg without it is a call of its own. The agent id is the
`agent_header` value of any leg, else `SipOptions.agent_id`.

SIPREC (RFC 7866): an INVITE whose multipart body carries `rs-metadata` is a recording
session from an SBC or PBX. Each of its audio lines gets its own RTP port; the metadata says
which participant sends which line (by `a=label`), and `siprec.assign` makes one participant
the agent (its AOR user part is the agent id) and the others customers. Metadata in a
re-INVITE or UPDATE is merged (`partial`) or replaces what was known (`complete`), and the
streams follow it from then on.

A call starts with its first RTP packet (the call clock's sample 0, as for `rtp://`) and ends
when its last leg sends BYE (`hangup`), when no RTP came for `rtp_timeout_s` (`timeout`, and
the agent sends BYE on every leg), or when the source stops (`stopped`, BYE on every leg).
Nothing a peer sends is fatal: malformed messages are counted (`malformed_messages`) and
answered with 400 when they can be, oversized ones are dropped, connections and legs over
the limits are refused (503), and a broken TCP connection only loses what was on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import re
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from qa.errors import ConfigError, SignallingError, SourceError
from qa.ids import new_call_id
from qa.sources.base import SourceSink
from qa.sources.rtp import CLOCK_RATE, RtpOptions, RtpSource
from qa.sources.sip import message as sipmsg
from qa.sources.sip import sdp, siprec
from qa.types import AudioChunk, CallInfo, Speaker

log = logging.getLogger("qa.sources.sip")

#: RFC 3261 timer T1 and T2: the 2xx to an INVITE is resent at T1, 2*T1, ... capped at T2,
#: until the ACK comes or 64*T1 have passed.
_T1 = 0.5
_T2 = 4.0
#: How long an answered request's response is kept to answer its retransmissions (64*T1).
_CACHE_S = 32.0
#: Most bytes of responses kept for retransmissions. A response copies the request's Via,
#: From and To, so a flood of 60 KB requests with new Call-IDs kept 140 MB in 10 s; past this
#: the oldest are dropped (a retransmission of one is then handled as a new request).
_CACHE_BYTES = 4 << 20
#: Seconds between two warnings about dropped cached responses.
_CACHE_WARN_S = 10.0
_ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
#: RTP datagrams read from one leg per wake-up before the others get their turn.
_BURST = 64

COUNTERS = (
    "messages", "requests", "responses", "malformed_messages", "oversized_messages",
    "invites", "legs",
    "calls", "calls_without_media", "rejected", "byes_received", "byes_sent", "timeouts",
    "retransmissions", "connections", "connections_refused", "send_errors",
    "rtp_packets", "rtp_lost", "rtp_malformed", "dtmf", "recordings", "metadata_updates",
    "rtp_unassigned", "cache_evictions",
)
#: RTP receiver counters summed into ours (ours name them rtp_*; dtmf keeps its name).
_RTP_COUNTERS = {"packets": "rtp_packets", "lost": "rtp_lost", "malformed": "rtp_malformed",
                 "dtmf": "dtmf"}


class Transport(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class RoleRule:
    """Names the speaker of a leg whose INVITE matches.

    Attributes:
        field: `from` or `to` (the URI in that header), `uri` (the Request-URI), or the name
            of any other header (its whole value).
        pattern: A regular expression, searched case-insensitively in the field.
        speaker: The speaker of the leg's audio when it matches.
    """

    field: str
    pattern: str
    speaker: Speaker

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError("sip options", f"bad pattern {self.pattern!r}: {exc}",
                              field="rules") from None

    def matches(self, invite: sipmsg.SipMessage) -> bool:
        name = self.field.lower()
        if name == "uri":
            value = invite.uri
        elif name in ("from", "to"):
            value = sipmsg.parse_address(invite.get(name)).uri
        else:
            value = invite.get(name)
        return bool(value) and re.search(self.pattern, value, re.IGNORECASE) is not None


@dataclass(frozen=True, slots=True)
class SipOptions:
    """How `SipSource` listens and answers.

    Attributes:
        host: Address to bind (SIP and RTP).
        public_address: The address SDP answers, Contact and Via name, where peers send
            RTP and requests; '' = `host` (which must then be a specific address).
        port: SIP port, UDP and TCP (0 = any free port, see `SipSource.port`).
        tcp: Also accept SIP over TCP on `port`.
        rules: Speaker rules, first match wins (see `RoleRule`).
        default_speaker: The speaker of a leg no rule matches.
        join_header: INVITEs with the same value of this header are legs of one call.
        agent_header: A header whose value is the call's agent id.
        agent_id: The agent id when no leg names one.
        siprec_agent: In SIPREC metadata, a participant whose AOR or name matches this
            regular expression is the agent (see `siprec.assign`); '' = by order.
        rtp_timeout_s: A call ends when none of its legs delivered RTP for this long.
        jitter_ms: The RTP jitter buffer's wait for a missing packet.
        max_legs: Legs at once; an INVITE past this is answered 503.
        max_connections: TCP connections at once; more are closed on accept.
        max_message: Largest SIP message (and UDP datagram) taken, in bytes.
    """

    host: str = "127.0.0.1"
    public_address: str = ""
    port: int = 5060
    tcp: bool = True
    rules: tuple[RoleRule, ...] = ()
    default_speaker: Speaker = Speaker.CUSTOMER
    join_header: str = "X-QA-Call"
    agent_header: str = "X-QA-Agent"
    agent_id: str = ""
    siprec_agent: str = ""
    rtp_timeout_s: float = 30.0
    jitter_ms: float = 60.0
    max_legs: int = 200
    max_connections: int = 100
    max_message: int = 65535

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("sip options", f"not a port: {self.port}", field="port")
        if self.rtp_timeout_s <= 0:
            raise ConfigError("sip options", "must be > 0", field="rtp_timeout_s")
        for name in ("max_legs", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError("sip options", "must be >= 1", field=name)
        if self.max_message < 1024:
            raise ConfigError("sip options", "must be >= 1024", field="max_message")
        if not self.public_address and self.host in ("0.0.0.0", ""):
            raise ConfigError("sip options", "listening on every interface: set the address "
                              "peers send RTP to (?address=...)", field="public_address")

    @property
    def address(self) -> str:
        """The address this agent names in SDP, Contact and Via."""
        return self.public_address or self.host


def parse_sip_url(spec: str) -> SipOptions:
    """Reads `sip://HOST:PORT[?agent=FIELD:REGEX&customer=FIELD:REGEX&join=HEADER&...]`
    (`siprec://` is the same user agent: it answers plain and SIPREC INVITEs alike).

    `agent=` and `customer=` add rules in the order given (FIELD as in `RoleRule`); the other
    keys are `default` (agent/customer/unknown), `join`, `agent_header`, `siprec_agent`,
    `address` (the address SDP names, needed when HOST is 0.0.0.0),
    `timeout` (RTP timeout, seconds), `jitter_ms`, `max_legs` and `tcp` (0: UDP only).

    Raises:
        ConfigError: Naming the part of `spec` that is wrong.
    """
    parts = urlsplit(spec)
    if parts.scheme not in ("sip", "siprec") or not parts.hostname:
        raise ConfigError(spec, "expected sip://HOST:PORT[?OPTIONS]", field="source")
    try:
        port = parts.port if parts.port is not None else 5060
    except ValueError:
        raise ConfigError(spec, "bad port", field="source") from None
    rules: list[RoleRule] = []
    values: dict[str, object] = {"host": parts.hostname, "port": port}
    try:
        for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
            if key in ("agent", "customer"):
                field, colon, pattern = value.partition(":")
                if not colon or not field:
                    raise ConfigError(spec, f"expected {key}=FIELD:REGEX", field=key)
                rules.append(RoleRule(field, pattern, Speaker(key)))
            elif key == "default":
                values["default_speaker"] = Speaker(value)
            elif key in ("join", "agent_header", "siprec_agent"):
                values["join_header" if key == "join" else key] = value
            elif key == "address":
                values["public_address"] = value
            elif key == "timeout":
                values["rtp_timeout_s"] = float(value)
            elif key == "jitter_ms":
                values["jitter_ms"] = float(value)
            elif key == "max_legs":
                values["max_legs"] = int(value)
            elif key == "tcp":
                values["tcp"] = value not in ("0", "false", "no")
            else:
                raise ConfigError(spec, f"unknown option {key!r}", field="source")
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(spec, str(exc), field="source") from None
    return SipOptions(rules=tuple(rules), **values)  # type: ignore[arg-type]


class _CallSink:
    """Between a call's RTP receiver and the pipeline: puts the SIP call's id and info on what
    the receiver reports (the receiver names calls after its port; one receiver serves one
    SIP call, so its single call is ours)."""

    def __init__(self, call: _Call, sink: SourceSink) -> None:
        self.call = call
        self.sink = sink
        self.started = False
        self.ended = ""

    def call_started(self, info: CallInfo) -> None:
        self.started = True
        self.sink.call_started(self.call.info(info.started_at))

    def audio(self, chunk: AudioChunk) -> None:
        self.sink.audio(dataclasses.replace(chunk, call_id=self.call.call_id))

    def dtmf(self, call_id: str, channel: Speaker, digit: str, time: float,
             duration: float) -> None:
        self.sink.dtmf(self.call.call_id, channel, digit, time, duration)

    def call_ended(self, call_id: str, reason: str) -> None:
        self.ended = reason
        self.sink.call_ended(self.call.call_id, reason)


class _Call:
    sink: _CallSink  # set by `_new_call` right after construction (the sink needs the call)

    def __init__(self, call_id: str, key: str, joined: bool, source: str,
                 rtp: RtpSource) -> None:
        self.call_id = call_id
        self.key = key
        self.joined = joined
        self.source = source
        self.rtp = rtp
        self.legs: list[_Leg] = []
        self.agent_id = ""

    def info(self, started_at: float) -> CallInfo:
        channels = ((Speaker.AGENT, Speaker.CUSTOMER) if self.joined
                    else tuple(dict.fromkeys(leg.speaker for leg in self.legs if leg.speaker)))
        return CallInfo(self.call_id, self.agent_id, self.source, started_at, channels,
                        CLOCK_RATE)


@dataclass(eq=False)
class _Media:
    """One RTP port of a leg: the audio line it answers (SDP label or position), and the
    speaker its packets are (None: not known yet, packets dropped and counted)."""

    name: str
    sock: socket.socket
    port: int
    speaker: Speaker | None


@dataclass(eq=False)
class _Leg:
    """One answered INVITE: its dialog, its RTP ports, and how to reach its sender."""

    key: tuple[str, str]
    invite: sipmsg.SipMessage
    to_tag: str
    transport: Transport
    peer: tuple[str, int]
    conn: socket.socket | None
    speaker: Speaker | None
    call: _Call
    metadata: siprec.Metadata | None = None
    offer: tuple[sdp.Media, ...] = ()
    streams: dict[str, _Media] = dataclasses.field(default_factory=dict)
    answer: bytes = b""
    acked: bool = False
    resend_at: float = 0.0
    interval: float = _T1
    give_up_at: float = 0.0
    local_cseq: int = 0


class SipSource:
    """Answers SIP calls and delivers their audio (see the module docstring).

    Sockets are bound on construction so that `port` is known before a call is placed; `run`
    closes them when it returns (a source runs once). Counters are plain integers updated by
    the source thread and copied on read.
    """

    def __init__(self, options: SipOptions) -> None:
        """Binds the SIP sockets.

        Raises:
            SourceError: When the port cannot be bound.
        """
        self.options = options
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._listener: socket.socket | None = None
        try:
            self._udp.bind((options.host, options.port))
            self.port = self._udp.getsockname()[1]
            self._udp.setblocking(False)
            if options.tcp:
                self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._listener.bind((options.host, self.port))
                self._listener.listen(64)
                self._listener.setblocking(False)
        except OSError as exc:
            self.close()
            raise SourceError(f"cannot bind SIP {options.host}:{options.port}: {exc}") from exc
        self.name = f"sip://{options.host}:{self.port}"
        self._buffer = bytearray(options.max_message)
        self._rtp_buffer = bytearray(2048)
        self._selector: selectors.BaseSelector | None = None
        self._conns: dict[socket.socket, bytearray] = {}
        self._legs: dict[tuple[str, str], _Leg] = {}
        self._calls: dict[str, _Call] = {}
        self._cache: dict[tuple[str, str, str], tuple[bytes, float]] = {}
        self._cache_bytes = 0  # the sum of the cached responses' lengths
        self._cache_warned = -_CACHE_WARN_S
        self._calls_made = 0
        self._rtp_done: dict[str, int] = dict.fromkeys(_RTP_COUNTERS.values(), 0)
        self._sink: SourceSink | None = None

    def close(self) -> None:
        """Closes every socket (`run` does this itself when it returns)."""
        for sock in (self._udp, self._listener, *self._conns,
                     *(m.sock for leg in self._legs.values() for m in leg.streams.values())):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def stats(self) -> Mapping[str, int]:
        """Counters since start: SIP messages, requests, responses, malformed_messages,
        oversized_messages,
        invites, legs, calls, calls_without_media, rejected (4xx/5xx to INVITEs),
        byes_received, byes_sent, timeouts, retransmissions, connections, connections_refused,
        send_errors, recordings (SIPREC INVITEs), metadata_updates, rtp_unassigned (packets on
        a SIPREC stream no participant sends), and the RTP receivers' rtp_packets, rtp_lost,
        rtp_malformed and dtmf."""
        counters = dict(self._counters)
        for key, value in self._rtp_done.items():
            counters[key] += value
        for call in list(self._calls.values()):
            for key, value in call.rtp.stats().items():
                if key in _RTP_COUNTERS:
                    counters[_RTP_COUNTERS[key]] += value
        return counters

    # -- the loop ----------------------------------------------------------------------

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Answers and receives until `stop` is set; then sends BYE on every leg, ends every
        call with `stopped` and closes the sockets. Wakes every 20 ms for the jitter buffers,
        timeouts and retransmissions."""
        self._sink = sink
        selector = self._selector = selectors.DefaultSelector()
        selector.register(self._udp, selectors.EVENT_READ, ("udp", None))
        if self._listener is not None:
            selector.register(self._listener, selectors.EVENT_READ, ("listen", None))
        reason = "stopped"
        try:
            while not stop.is_set():
                for key, _ in selector.select(0.02):
                    kind, item = key.data
                    if kind == "udp":
                        self._read_udp()
                    elif kind == "listen":
                        self._accept()
                    elif kind == "tcp":
                        self._read_tcp(key.fileobj)  # type: ignore[arg-type]
                    else:
                        self._read_rtp(item)
                self._tick(time.monotonic())
        except BaseException as exc:
            reason = f"error: {exc}"
            raise
        finally:
            for call in list(self._calls.values()):
                self._end_call(call, reason, send_bye=True)
            selector.close()
            self.close()

    def _tick(self, now: float) -> None:
        for call in list(self._calls.values()):
            call.rtp.tick(call.sink, now)
            if call.sink.ended:  # the receiver gave up on silence
                self._counters["timeouts"] += 1
                self._end_call(call, call.sink.ended, send_bye=True)
        for leg in list(self._legs.values()):
            if leg.acked or leg.transport is not Transport.UDP or now < leg.resend_at:
                continue
            if now >= leg.give_up_at:
                log.warning("%s: no ACK for call %s; ending the leg", self.name, leg.key[0])
                self._end_leg(leg, send_bye=True)
                continue
            self._counters["retransmissions"] += 1
            self._send(leg.transport, leg.conn, leg.peer, leg.answer)
            leg.interval = min(leg.interval * 2, _T2)
            leg.resend_at = now + leg.interval
        for key in [k for k, (_, expires) in self._cache.items() if expires <= now]:
            self._cache_bytes -= len(self._cache.pop(key)[0])

    # -- transport ---------------------------------------------------------------------

    def _read_udp(self) -> None:
        for _ in range(_BURST):
            try:
                size, peer = self._udp.recvfrom_into(self._buffer, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. ICMP port unreachable reported on a later read
                log.debug("%s: UDP read: %s", self.name, exc)
                continue
            if size > len(self._buffer):
                self._counters["oversized_messages"] += 1
                continue
            data = bytes(self._buffer[:size])
            if not data.strip():
                continue  # CRLF keep-alive (RFC 5626)
            self._handle(data, Transport.UDP, None, peer)

    @property
    def _poller(self) -> selectors.BaseSelector:
        assert self._selector is not None, "polling outside run"
        return self._selector

    @property
    def _out(self) -> SourceSink:
        assert self._sink is not None, "delivering outside run"
        return self._sink

    def _accept(self) -> None:
        assert self._listener is not None  # polled only when TCP is on
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        if len(self._conns) >= self.options.max_connections:
            self._counters["connections_refused"] += 1
            conn.close()
            return
        self._counters["connections"] += 1
        conn.setblocking(False)
        self._conns[conn] = bytearray()
        self._poller.register(conn, selectors.EVENT_READ, ("tcp", None))

    def _read_tcp(self, conn: socket.socket) -> None:
        buffer = self._conns.get(conn)
        if buffer is None:
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_conn(conn)
            return
        buffer += data
        peer = conn.getpeername()
        while True:
            try:
                whole = sipmsg.split_stream(buffer, self.options.max_message)
            except SignallingError as exc:
                # The stream cannot be resynchronised: drop this connection only.
                self._counters["oversized_messages" if "larger" in exc.reason
                               else "malformed_messages"] += 1
                log.info("%s: closing TCP connection from %s: %s", self.name, peer, exc.reason)
                self._drop_conn(conn)
                return
            if whole is None:
                return
            self._handle(whole, Transport.TCP, conn, peer)
            if conn not in self._conns:
                return

    def _drop_conn(self, conn: socket.socket) -> None:
        self._conns.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(conn)
        conn.close()
        for leg in self._legs.values():
            if leg.conn is conn:
                leg.conn = None

    def _send(self, transport: Transport, conn: socket.socket | None, peer: tuple[str, int],
              data: bytes) -> None:
        try:
            if transport is Transport.UDP:
                self._udp.sendto(data, peer)
            elif conn is not None:
                conn.sendall(data)
            else:
                raise OSError("TCP connection closed")
        except OSError as exc:
            self._counters["send_errors"] += 1
            log.info("%s: cannot send to %s: %s", self.name, peer, exc)

    # -- messages ----------------------------------------------------------------------

    def _handle(self, data: bytes, transport: Transport, conn: socket.socket | None,
                peer: tuple[str, int]) -> None:
        self._counters["messages"] += 1
        try:
            message = sipmsg.parse_message(data)
        except SignallingError as exc:
            self._counters["malformed_messages"] += 1
            log.info("%s: malformed SIP message from %s: %s", self.name, peer, exc.reason)
            self._bad_request(data, transport, conn, peer)
            return
        if not message.is_request:
            self._counters["responses"] += 1  # to our BYEs; nothing more to do
            return
        self._counters["requests"] += 1
        cached = self._cache.get(self._cache_key(message))
        if cached is not None and message.method != "ACK":
            self._counters["retransmissions"] += 1
            self._send(transport, conn, peer, cached[0])
            return
        handlers: dict[str, Callable[..., None]] = {
            "INVITE": self._invite, "ACK": self._ack, "BYE": self._bye, "CANCEL": self._cancel,
            "OPTIONS": self._options, "UPDATE": self._update}
        handler = handlers.get(message.method)
        if handler is None:
            self._reply(message, 405, transport, conn, peer, headers=(("Allow", _ALLOW),))
            return
        try:
            handler(message, transport, conn, peer)
        except SignallingError as exc:
            self._counters["malformed_messages"] += 1
            log.info("%s: bad %s from %s: %s", self.name, message.method, peer, exc.reason)
            if message.method != "ACK":
                self._reply(message, 400, transport, conn, peer)

    def _bad_request(self, data: bytes, transport: Transport, conn: socket.socket | None,
                     peer: tuple[str, int]) -> None:
        # Answer 400 when enough of the message survives to address a response to it.
        with contextlib.suppress(Exception):
            head = data.split(b"\r\n\r\n")[0].decode("utf-8", "replace").split("\r\n")
            if not head[0].endswith("SIP/2.0") or head[0].startswith("ACK"):
                return
            headers = []
            for line in head[1:]:
                name, colon, value = line.partition(":")
                if colon:
                    headers.append((sipmsg.canonical(name), value.strip()))
            partial = sipmsg.SipMessage("X", "", 0, "", tuple(headers), b"")
            if all(partial.get(h) for h in ("via", "from", "to", "call-id", "cseq")):
                self._send(transport, conn, peer, sipmsg.response(partial, 400))

    def _cache_key(self, message: sipmsg.SipMessage) -> tuple[str, str, str]:
        return (message.call_id, message.get("cseq"), message.get("via"))

    def _reply(self, message: sipmsg.SipMessage, status: int, transport: Transport,
               conn: socket.socket | None, peer: tuple[str, int], *, to_tag: str = "",
               headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> bytes:
        data = sipmsg.response(message, status, to_tag=to_tag or secrets.token_hex(4),
                               headers=(*headers, ("Server", "qa")), body=body,
                               content_type="application/sdp" if body else "")
        self._send(transport, conn, peer, data)
        if status >= 200:
            self._remember(self._cache_key(message), data)
        return data

    def _remember(self, key: tuple[str, str, str], data: bytes) -> None:
        """Caches a final response for `_CACHE_S`, dropping the oldest past `_CACHE_BYTES`."""
        now = time.monotonic()
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= len(old[0])
        self._cache[key] = (data, now + _CACHE_S)
        self._cache_bytes += len(data)
        dropped = 0
        while self._cache_bytes > _CACHE_BYTES and len(self._cache) > 1:
            self._cache_bytes -= len(self._cache.pop(next(iter(self._cache)))[0])
            dropped += 1
        if dropped:
            self._counters["cache_evictions"] += dropped
            if now - self._cache_warned >= _CACHE_WARN_S:
                self._cache_warned = now
                log.warning("%s: responses kept for retransmissions exceed %d bytes; dropping "
                            "the oldest (%d so far): a flood of requests?", self.name,
                            _CACHE_BYTES, self._counters["cache_evictions"])

    def _contact(self, transport: Transport) -> str:
        return f"<sip:qa@{self.options.address}:{self.port};transport={transport}>"

    def _invite(self, invite: sipmsg.SipMessage, transport: Transport,
                conn: socket.socket | None, peer: tuple[str, int]) -> None:
        self._counters["invites"] += 1
        key = (invite.call_id, sipmsg.parse_address(invite.get("from")).tag)
        offer, metadata = self._offer(invite)
        leg = self._legs.get(key)
        if leg is not None:  # a re-INVITE: same ports for the same lines, metadata followed
            if metadata is not None and leg.metadata is not None:
                leg.metadata = leg.metadata.merged(metadata)
                self._counters["metadata_updates"] += 1
            self._answer(leg, invite, offer or leg.offer, transport, conn, peer)
            return
        if not any(sdp.choose(media) for media in offer):
            self._counters["rejected"] += 1
            self._reply(invite, 488, transport, conn, peer)
            return
        if len(self._legs) >= self.options.max_legs:
            self._counters["rejected"] += 1
            self._reply(invite, 503, transport, conn, peer, headers=(("Retry-After", "5"),))
            return
        dtmf_pt = next((c.dtmf_pt for c in map(sdp.choose, offer) if c), None)
        if metadata is not None:  # SIPREC: a call of its own, speakers from the metadata
            self._counters["recordings"] += 1
            call = self._new_call(f"siprec:{invite.call_id}", True, dtmf_pt)
            speaker = None
        else:
            join = invite.get(self.options.join_header)
            existing = self._calls.get(join or f"sip:{invite.call_id}")
            speaker = self._speaker(invite, existing)
            if speaker is None:
                self._counters["rejected"] += 1
                self._reply(invite, 486, transport, conn, peer)
                return
            call = existing or self._new_call(join or f"sip:{invite.call_id}", bool(join),
                                              dtmf_pt)
            agent = invite.get(self.options.agent_header)
            if agent and not call.agent_id:
                call.agent_id = agent
        leg = _Leg(key, invite, secrets.token_hex(4), transport, peer, conn, speaker, call,
                   metadata=metadata)
        call.legs.append(leg)
        self._legs[key] = leg
        self._counters["legs"] += 1
        log.info("%s: leg %s (%s, from %s) joins call %s", self.name, invite.call_id,
                 speaker or "SIPREC", invite.get("from"), call.call_id)
        self._answer(leg, invite, offer, transport, conn, peer)

    def _offer(self, invite: sipmsg.SipMessage
               ) -> tuple[tuple[sdp.Media, ...], siprec.Metadata | None]:
        """The SDP offer and, for a SIPREC INVITE, its recording metadata."""
        content_type = invite.get("content-type").lower()
        if not invite.body:
            return (), None
        if not content_type.startswith("multipart/"):
            return sdp.parse_sdp(invite.body), None
        parts = siprec.split_multipart(invite.get("content-type"), invite.body)
        offers = [p for p in parts if p.content_type == "application/sdp"]
        if not offers:
            raise SignallingError("SIPREC", "multipart body without application/sdp")
        metadata = next((siprec.parse_metadata(p.content) for p in parts
                         if p.content_type.startswith("application/rs-metadata")), None)
        return sdp.parse_sdp(offers[0].content), metadata

    def _speaker(self, invite: sipmsg.SipMessage, call: _Call | None) -> Speaker | None:
        """The leg's speaker by the rules; the other one when a joined call already has it;
        None when the call has both."""
        speaker = next((rule.speaker for rule in self.options.rules if rule.matches(invite)),
                       self.options.default_speaker)
        taken = {other.speaker for other in call.legs} if call is not None else set()
        if speaker not in taken:
            return speaker
        free = [s for s in (Speaker.AGENT, Speaker.CUSTOMER) if s not in taken]
        if free and call is not None:
            log.warning("%s: call %s already has a %s leg; leg %s gets %s", self.name,
                        call.call_id, speaker, invite.call_id, free[0])
        return free[0] if free else None

    def _answer(self, leg: _Leg, invite: sipmsg.SipMessage, offer: tuple[sdp.Media, ...],
                transport: Transport, conn: socket.socket | None,
                peer: tuple[str, int]) -> None:
        """Answers the (re-)INVITE: one RTP port per usable audio line (a plain leg takes
        its first only), the same port for a line seen before (by label, else position)."""
        ports: list[int | None] = []
        try:
            for index, media in enumerate(offer):
                if not sdp.choose(media) or (leg.metadata is None and any(ports)):
                    ports.append(None)
                    continue
                name = media.label or str(index)
                stream = leg.streams.get(name) or self._open_stream(leg, name)
                ports.append(stream.port)
        except OSError as exc:
            log.error("%s: cannot bind an RTP port: %s", self.name, exc)
            self._counters["rejected"] += 1
            self._reply(invite, 500, transport, conn, peer)
            if not leg.answer:  # a new leg: nothing of it may stay
                self._end_leg(leg, send_bye=False)
            return
        leg.offer = offer
        self._assign(leg)
        body = sdp.answer(offer, self.options.address, tuple(ports))
        leg.answer = self._reply(
            invite, 200, transport, conn, peer, to_tag=leg.to_tag, body=body,
            headers=(("Contact", self._contact(transport)), ("Allow", _ALLOW)),
        )
        now = time.monotonic()
        leg.acked = False
        leg.transport, leg.conn, leg.peer = transport, conn, peer
        leg.interval, leg.resend_at, leg.give_up_at = _T1, now + _T1, now + 64 * _T1

    def _open_stream(self, leg: _Leg, name: str) -> _Media:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.options.host, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        stream = _Media(name, sock, sock.getsockname()[1], leg.speaker)
        leg.streams[name] = stream
        self._poller.register(sock, selectors.EVENT_READ, ("rtp", (leg, stream)))
        return stream

    def _assign(self, leg: _Leg) -> None:
        """Gives each of a SIPREC leg's streams the speaker its metadata names."""
        if leg.metadata is None:
            return
        assignment = siprec.assign(leg.metadata, self.options.siprec_agent)
        speakers = dict(assignment.speakers)
        for name, stream in leg.streams.items():
            stream.speaker = speakers.get(name)
        if not leg.call.agent_id:
            leg.call.agent_id = assignment.agent_id

    def _update(self, update: sipmsg.SipMessage, transport: Transport,
                conn: socket.socket | None, peer: tuple[str, int]) -> None:
        """UPDATE (RFC 3311) carrying new recording metadata (RFC 7866 section 6.2)."""
        leg = self._legs.get((update.call_id, sipmsg.parse_address(update.get("from")).tag))
        if leg is None:
            self._reply(update, 481, transport, conn, peer)
            return
        offer, metadata = self._offer(update)
        if offer:
            raise SignallingError("SIP", "UPDATE with an SDP offer is not taken; use re-INVITE")
        if metadata is not None and leg.metadata is not None:
            leg.metadata = leg.metadata.merged(metadata)
            self._counters["metadata_updates"] += 1
            self._assign(leg)
        self._reply(update, 200, transport, conn, peer, to_tag=leg.to_tag)

    def _ack(self, ack: sipmsg.SipMessage, *_: object) -> None:
        leg = self._legs.get((ack.call_id, sipmsg.parse_address(ack.get("from")).tag))
        if leg is not None:
            leg.acked = True

    def _bye(self, bye: sipmsg.SipMessage, transport: Transport, conn: socket.socket | None,
             peer: tuple[str, int]) -> None:
        self._counters["byes_received"] += 1
        leg = self._legs.get((bye.call_id, sipmsg.parse_address(bye.get("from")).tag))
        if leg is None:
            self._reply(bye, 481, transport, conn, peer)
            return
        self._reply(bye, 200, transport, conn, peer, to_tag=leg.to_tag)
        self._end_leg(leg, send_bye=False)

    def _cancel(self, cancel: sipmsg.SipMessage, transport: Transport,
                conn: socket.socket | None, peer: tuple[str, int]) -> None:
        # INVITEs are answered at once, so there is never a pending one to cancel; the 200
        # to the CANCEL is all RFC 3261 section 9.2 asks for then.
        leg = self._legs.get((cancel.call_id, sipmsg.parse_address(cancel.get("from")).tag))
        self._reply(cancel, 200 if leg else 481, transport, conn, peer)

    def _options(self, options: sipmsg.SipMessage, transport: Transport,
                 conn: socket.socket | None, peer: tuple[str, int]) -> None:
        self._reply(options, 200, transport, conn, peer,
                    headers=(("Allow", _ALLOW), ("Accept", "application/sdp")))

    # -- calls -------------------------------------------------------------------------

    def _new_call_id(self) -> str:
        """The one place call ids are made: `sip-<SIP port>-<UUIDv7>`, unique across runs."""
        self._calls_made += 1
        return new_call_id(f"sip-{self.port}")

    def _new_call(self, key: str, joined: bool, dtmf_pt: int | None) -> _Call:
        # One RTP receiver per call, driven through its socket-less API (receive/tick/finish)
        # with each leg's socket naming the channel; the port it binds itself is not used.
        # Telephone events are read with the first leg's payload type (101 by default).
        rtp = RtpSource(RtpOptions(host=self.options.host, port=0, customer_port=None,
                                   jitter_ms=self.options.jitter_ms,
                                   inactivity_timeout_s=self.options.rtp_timeout_s,
                                   dtmf_payload_type=101 if dtmf_pt is None else dtmf_pt))
        rtp.close()
        call = _Call(self._new_call_id(), key, joined, self.name, rtp)
        call.agent_id = self.options.agent_id
        call.sink = _CallSink(call, self._out)
        self._calls[key] = call
        return call

    def _read_rtp(self, item: tuple[_Leg, _Media]) -> None:
        leg, stream = item
        call = leg.call
        for _ in range(_BURST):
            try:
                size = stream.sock.recv_into(self._rtp_buffer, 0, socket.MSG_TRUNC)
            except OSError:  # BlockingIOError: drained; others: nothing more to read now
                return
            if call.sink.ended:
                continue
            if stream.speaker is None:
                self._counters["rtp_unassigned"] += 1
                continue
            view = memoryview(self._rtp_buffer)[: min(size, len(self._rtp_buffer))]
            call.rtp.receive(call.sink, view, stream.speaker, time.monotonic(),
                             oversized=size > len(self._rtp_buffer))

    def _close_streams(self, leg: _Leg) -> None:
        for stream in leg.streams.values():
            with contextlib.suppress(KeyError, ValueError):
                if self._selector is not None:
                    self._poller.unregister(stream.sock)
            stream.sock.close()
        leg.streams.clear()

    def _end_leg(self, leg: _Leg, *, send_bye: bool) -> None:
        if self._legs.pop(leg.key, None) is None:
            return
        if send_bye:
            self._send_bye(leg)
        self._close_streams(leg)
        call = leg.call
        call.legs.remove(leg)
        if not call.legs:
            self._end_call(call, "hangup", send_bye=False)

    def _end_call(self, call: _Call, reason: str, *, send_bye: bool) -> None:
        for leg in list(call.legs):
            call.legs.remove(leg)
            self._legs.pop(leg.key, None)
            if send_bye:
                self._send_bye(leg)
            self._close_streams(leg)
        self._calls.pop(call.key, None)
        if not call.sink.ended:
            call.rtp.finish(call.sink, reason)
        if call.sink.started:
            self._counters["calls"] += 1
        else:
            self._counters["calls_without_media"] += 1
        for key, value in call.rtp.stats().items():
            if key in _RTP_COUNTERS:
                self._rtp_done[_RTP_COUNTERS[key]] += value

    def _send_bye(self, leg: _Leg) -> None:
        """Ends the dialog from our side (RFC 3261 section 15): to the INVITE's sender only."""
        invite = leg.invite
        leg.local_cseq += 1
        target = sipmsg.parse_address(invite.get("contact")).uri if invite.get("contact") \
            else sipmsg.parse_address(invite.get("from")).uri
        routes = tuple(("Route", value) for value in invite.all("record-route"))
        headers = (
            ("Via", f"SIP/2.0/{leg.transport.upper()} {self.options.address}:{self.port};"
                    f"branch=z9hG4bK{secrets.token_hex(8)};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{invite.get('to')};tag={leg.to_tag}"
             if not sipmsg.parse_address(invite.get("to")).tag else invite.get("to")),
            ("To", invite.get("from")),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{leg.local_cseq} BYE"),
            *routes,
        )
        self._counters["byes_sent"] += 1
        self._send(leg.transport, leg.conn, leg.peer, sipmsg.request("BYE", target, headers))


