"""RTP over UDP (RFC 3550) with G.711 µ-law (PT 0) and A-law (PT 8) payloads.

One stream per direction. Streams are told apart by port (a port pair: agent, customer) or,
on a single port, by SSRC (`RtpOptions.ssrc_map`, else the first SSRC heard is the agent and
the second the customer). Each stream goes through a `JitterBuffer`; released packets are
placed on the call clock by their RTP timestamp, so a lost packet becomes silence of exactly
its length and the clock stays true.

Call clock: the call starts at the first accepted packet of any stream (sample 0). A stream's
first packet is placed where the wall clock says it arrived relative to that instant (never
before the channel's end), and every later packet by its RTP timestamp from there. The two
directions have unrelated timestamps (without RTCP), so arrival time is what aligns them.
Each channel is one gapless run of chunks from sample 0: whatever its packets do not cover
(before its first packet, lost packets, a telephone event) is delivered as silence.

Clock abuse: a timestamp jump forward is filled with silence only as far as the wall clock
allows: by the wall time since the stream's previous packet, plus a bank of `jitter_ms` +
`gap_slack_ms` that refills with wall time (so loss after jitter is still filled exactly). The
rest of the jump is not filled: the stream's clock is pulled back by it, and it is counted in
`clock_jumps` (packets) and `gap_rejected` (samples) and logged. A sender that forges jumps of
9.9 s in 10 ms steps therefore cannot stretch a call beyond its real length. Contiguous audio
is never cut, so a sender faster than real time (a test replay) loses nothing.

Hijack: each channel of a call is locked to the first source address:port heard on it (per
SSRC on a single port, per port with a port pair). Packets from another address that claim a
locked SSRC or port are dropped and counted in `foreign_source` (and logged), so forged packets
cannot take a live stream over; only after `source_lock_s` without a packet from its address
may a stream move to another one (a gateway that moved the media mid-call), which is logged.
A new SSRC on a single port when both channels are taken is dropped and counted in
`unknown_ssrc`. Whoever is heard first owns the slot: when forgers can be first, configure
`ssrc_map` or a port pair behind a firewall.

Restart: a timestamp jump beyond `max_gap_s` either way, a sequence jump of more than 3,000
packets (RFC 3550's MAX_DROPOUT), or a new SSRC on a port-pair channel means the sender
restarted (or stopped sending for that long). The old stream is flushed and the new one is
anchored by arrival time like a first packet, instead of filling the jump with silence; it is
counted in `restarts`.

Nothing a datagram carries is fatal: malformed packets, unknown payload types, duplicates,
late packets, RTCP on the RTP port, packets from unmapped SSRCs and from foreign addresses are
counted and dropped.
RFC 4733 telephone events (DTMF) are reported to the sink once per key press, never decoded
as audio. A call ends after `inactivity_timeout_s` without an accepted packet; the next packet
starts a new call, with id `rtp-<agent port>-<UUIDv7>` (unique across restarts, `qa.ids`).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import selectors
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import numpy as np

from qa._native import g711
from qa.errors import ConfigError, RtpPacketError, SourceError
from qa.ids import new_call_id
from qa.sources.base import SourceSink
from qa.sources.jitter import JitterBuffer, Verdict, extend_ts
from qa.types import AudioChunk, CallInfo, Speaker

log = logging.getLogger("qa.sources.rtp")

#: G.711's sampling rate, which is also its RTP clock rate (RFC 3551).
CLOCK_RATE = 8000
PT_PCMU = 0
PT_PCMA = 8
_HEADER = struct.Struct("!BBHII")
#: RFC 3550 MAX_DROPOUT: a larger sequence jump is a restart, not loss.
_MAX_DROPOUT = 3000
#: Second header byte of RTCP packets (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR); RFC 5761
#: keeps RTP payload types off this range so the two can share a port.
_RTCP_TYPES = range(200, 208)
#: RFC 4733 event codes 0-15 are the DTMF keys.
_DTMF_DIGITS = "0123456789*#ABCD"
#: At most one debug line per this many seconds about malformed packets.
_LOG_INTERVAL_S = 1.0
#: Datagrams read from one socket per wake-up before the others get their turn.
_BURST = 256

COUNTERS = (
    "packets",
    "bytes",
    "audio_packets",
    "lost",
    "late",
    "duplicate",
    "malformed",
    "unknown_payload",
    "dtmf",
    "calls",
    "rtcp",
    "unknown_ssrc",
    "restarts",
    "filled_samples",
    "foreign_source",
    "clock_jumps",
    "gap_rejected",
)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One parsed RTP packet (RFC 3550 section 5.1).

    Attributes:
        version: Always 2 (anything else is refused).
        padding: The P bit; `payload` already has the padding removed.
        marker: The M bit.
        payload_type: 7-bit payload type (0 = PCMU, 8 = PCMA, 101 = telephone-event usually).
        sequence: 16-bit sequence number.
        timestamp: 32-bit media timestamp.
        ssrc: Synchronisation source id.
        csrcs: Contributing source ids (0-15 of them).
        extension: `(profile, data)` of the header extension, or None.
        payload: The payload, a view into the datagram (copy it to keep it).
    """

    version: int
    padding: bool
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    extension: tuple[int, bytes] | None
    payload: memoryview


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parses one RTP datagram.

    Args:
        data: The whole datagram.

    Returns:
        The packet; its payload is a view into `data`.

    Raises:
        RtpPacketError: With reason `short header`, `wrong version`, `CSRC list past end`,
            `extension past end` or `bad padding length`.
    """
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise RtpPacketError("short header")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(view)
    if b0 >> 6 != 2:
        raise RtpPacketError("wrong version")
    offset = _HEADER.size
    cc = b0 & 0x0F
    if offset + 4 * cc > len(view):
        raise RtpPacketError("CSRC list past end")
    csrcs = struct.unpack_from(f"!{cc}I", view, offset)
    offset += 4 * cc
    extension = None
    if b0 & 0x10:
        if offset + 4 > len(view):
            raise RtpPacketError("extension past end")
        profile, words = struct.unpack_from("!HH", view, offset)
        offset += 4
        if offset + 4 * words > len(view):
            raise RtpPacketError("extension past end")
        extension = (profile, bytes(view[offset : offset + 4 * words]))
        offset += 4 * words
    end = len(view)
    padding = bool(b0 & 0x20)
    if padding:
        # The last octet counts the padding, itself included, so it is at least 1.
        count = view[-1]
        if count == 0 or count > end - offset:
            raise RtpPacketError("bad padding length")
        end -= count
    return RtpPacket(
        version=2,
        padding=padding,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        csrcs=csrcs,
        extension=extension,
        payload=view[offset:end],
    )


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """An RFC 4733 telephone-event payload.

    Attributes:
        event: Event code (0-9, 10 = '*', 11 = '#', 12-15 = A-D).
        end: The E bit: this packet ends the event (senders repeat it three times).
        volume: Power level in -dBm0 (0-63).
        duration: Duration so far, in RTP timestamp units.
    """

    event: int
    end: bool
    volume: int
    duration: int


def parse_telephone_event(payload: bytes | memoryview) -> TelephoneEvent:
    """Parses the 4-byte RFC 4733 event payload; raises `RtpPacketError` when it is shorter."""
    if len(payload) < 4:
        raise RtpPacketError("truncated telephone-event payload")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


@dataclass(frozen=True, slots=True)
class RtpOptions:
    """How `RtpSource` listens.

    Attributes:
        host: Address to bind.
        port: UDP port of the agent stream (0 = any free port, see `RtpSource.ports`).
        customer_port: UDP port of the customer stream; None = both streams share `port` and
            are told apart by SSRC.
        ssrc_map: On a single port, which SSRC is which channel. Empty = the first SSRC heard
            in a call is the agent, the second the customer, any further one is dropped (and
            counted in `unknown_ssrc`). When given, unlisted SSRCs are dropped. Ignored with a
            port pair, where the port decides.
        jitter_ms: How long a packet waits for a missing predecessor before that one is
            declared lost and filled with silence.
        inactivity_timeout_s: A call ends when none of its streams delivered a packet for
            this long.
        dtmf_payload_type: Dynamic payload type of RFC 4733 telephone events.
        agent_id: The agent of every call on these ports ('' if unknown).
        max_datagram: Largest datagram accepted, in bytes; larger ones count as malformed.
        max_gap_s: A timestamp jump beyond this is a stream restart, not silence.
        gap_slack_ms: Silence a timestamp jump may fill beyond the wall time since the stream's
            previous packet, on top of `jitter_ms` (see the module docstring: clock abuse).
        source_lock_s: A stream's source address may change only after this long without a
            packet from it (a gateway that moved the media); sooner, packets from another
            address are dropped as forged (see the module docstring: hijack).
        receive_buffer: SO_RCVBUF asked for each socket, so bursts are not dropped by the
            kernel while the thread is busy (the kernel may cap it at net.core.rmem_max).
    """

    host: str = "127.0.0.1"
    port: int = 5004
    customer_port: int | None = None
    ssrc_map: tuple[tuple[int, Speaker], ...] = ()
    jitter_ms: float = 60.0
    inactivity_timeout_s: float = 5.0
    dtmf_payload_type: int = 101
    agent_id: str = ""
    max_datagram: int = 2048
    max_gap_s: float = 10.0
    gap_slack_ms: float = 100.0
    source_lock_s: float = 2.0
    receive_buffer: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("port", "customer_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ConfigError("rtp options", f"not a UDP port: {value}", field=name)
        # NaN passes every comparison and infinity every bound: refuse both by name.
        for name in ("jitter_ms", "inactivity_timeout_s", "max_gap_s", "gap_slack_ms",
                     "source_lock_s"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError("rtp options", "must be a finite number", field=name)
        if self.jitter_ms < 0:
            raise ConfigError("rtp options", "must be >= 0", field="jitter_ms")
        if self.gap_slack_ms < 0:
            raise ConfigError("rtp options", "must be >= 0", field="gap_slack_ms")
        if self.source_lock_s < 0:
            raise ConfigError("rtp options", "must be >= 0", field="source_lock_s")
        if self.inactivity_timeout_s <= 0:
            raise ConfigError("rtp options", "must be > 0", field="inactivity_timeout_s")
        if not 0 <= self.dtmf_payload_type <= 127:
            raise ConfigError("rtp options", "must be 0-127", field="dtmf_payload_type")
        if self.max_datagram < 12:
            raise ConfigError("rtp options", "must hold an RTP header", field="max_datagram")
        if self.max_gap_s <= 0:
            raise ConfigError("rtp options", "must be > 0", field="max_gap_s")
        ssrcs = [ssrc for ssrc, _ in self.ssrc_map]
        if len(set(ssrcs)) != len(ssrcs):
            raise ConfigError("rtp options", "the same SSRC twice", field="ssrc_map")
        if not all(0 <= ssrc <= 0xFFFFFFFF for ssrc in ssrcs):
            raise ConfigError("rtp options", "an SSRC is 0 to 2**32-1", field="ssrc_map")
        channels = [channel for _, channel in self.ssrc_map]
        if len(set(channels)) != len(channels) or Speaker.UNKNOWN in channels:
            raise ConfigError(
                "rtp options", "one SSRC per channel, agent/customer", field="ssrc_map"
            )


def parse_rtp_url(url: str) -> RtpOptions:
    """Reads `rtp://HOST:PORT[,PORT2][?key=value&...]` into options.

    PORT is the agent stream and PORT2 the customer stream; with one port both share it.
    Query keys: `jitter_ms`, `timeout` (inactivity, seconds), `dtmf_pt`, `agent`, and
    `ssrc=AGENT,CUSTOMER` (decimal or 0x hex) for a single port.

    Raises:
        ConfigError: Naming the URL and the part that is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme != "rtp":
        raise ConfigError(url, "expected rtp://HOST:PORT[,PORT2]", field="scheme")
    host, sep, ports = parts.netloc.rpartition(":")
    if not sep or not host:
        raise ConfigError(url, "expected rtp://HOST:PORT[,PORT2]", field="port")
    try:
        numbers = [int(p) for p in ports.split(",")]
    except ValueError:
        raise ConfigError(url, f"not a port: {ports!r}", field="port") from None
    if len(numbers) > 2:
        raise ConfigError(url, "at most two ports (agent, customer)", field="port")
    kwargs: dict[str, object] = {"host": host.strip("[]"), "port": numbers[0]}
    if len(numbers) == 2:
        kwargs["customer_port"] = numbers[1]
    # Blank values are kept so that `?ssrc=` is refused rather than ignored.
    query = parse_qs(parts.query, keep_blank_values=True)
    casts = {"jitter_ms": ("jitter_ms", float), "timeout": ("inactivity_timeout_s", float),
             "dtmf_pt": ("dtmf_payload_type", int), "agent": ("agent_id", str)}
    for key, values in query.items():
        try:
            if key == "ssrc":
                ssrcs = [int(s, 0) for s in values[-1].split(",")]
                if len(ssrcs) > 2:
                    raise ConfigError(url, "at most two SSRCs (agent, customer)", field=key)
                if len(set(ssrcs)) != len(ssrcs):
                    raise ConfigError(url, "the same SSRC twice", field=key)
                if not all(0 <= ssrc <= 0xFFFFFFFF for ssrc in ssrcs):
                    raise ConfigError(url, "an SSRC is 0 to 2**32-1", field=key)
                channels = (Speaker.AGENT, Speaker.CUSTOMER)[: len(ssrcs)]
                kwargs["ssrc_map"] = tuple(zip(ssrcs, channels, strict=True))
            elif key in casts:
                name, cast = casts[key]
                kwargs[name] = cast(values[-1])
            else:
                raise ConfigError(url, "unknown option", field=key)
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(url, f"bad value {values[-1]!r}", field=key) from None
    try:
        return RtpOptions(**kwargs)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(url, exc.reason, field=exc.field) from None


class _Kind(enum.Enum):
    AUDIO = 1
    DTMF = 2
    NOTHING = 3  # a sequence slot that carries nothing we play (unknown type, bad event)


@dataclass(frozen=True, slots=True)
class _Item:
    ext_ts: int
    kind: _Kind
    pcm: np.ndarray | None = None
    event: TelephoneEvent | None = None


class _Stream:
    """One SSRC's packets within a channel."""

    def __init__(
        self, ssrc: int, window_s: float, arrived: float, first_ts: int, bank: int
    ) -> None:
        self.ssrc = ssrc
        self.jitter: JitterBuffer[_Item] = JitterBuffer(window_s)
        self.arrived = arrived
        self.ref_ts = first_ts  # unwrap reference: the latest accepted timestamp
        self.last_arrival = arrived  # of the latest accepted packet
        self.offset = 0  # samples of timestamp jumps not filled: the clock is pulled back
        self.end_ts = first_ts  # end of the furthest accepted payload, clock pulled back
        self.bank = bank  # samples of jump a packet may fill beyond the wall time
        self.base_ts: int | None = None  # timestamp of the first released packet
        self.base_sample = 0  # its place on the call clock
        self.dtmf_ts: int | None = None  # start timestamp of the current telephone event
        self.dtmf_done = True
        self.dtmf_digit = ""
        self.dtmf_duration = 0
        self.dtmf_sample = 0


class _Channel:
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.stream: _Stream | None = None
        self.next_sample = 0  # end of what this channel delivered, on the call clock


class _Call:
    """The state of one call: its channels, clock origin and last activity."""

    def __init__(self, call_id: str, started: float) -> None:
        self.call_id = call_id
        self.t0 = started
        self.last_packet = started
        self.channels = {s: _Channel(s) for s in (Speaker.AGENT, Speaker.CUSTOMER)}
        self.learned: dict[int, Speaker] = {}
        # The source address:port each SSRC (single port) or channel (port pair) is locked
        # to, and when a packet from it was last accepted.
        self.owners: dict[object, tuple[object, float]] = {}
        # What this call lost to forgers and clock jumps, for the line logged when it ends.
        self.foreign = 0
        self.gap_rejected = 0


class RtpSource:
    """Receives G.711 RTP streams on UDP and delivers them as calls (see the module docstring).

    Sockets are bound on construction so that `ports` is known before anything is sent;
    `run` closes them when it returns (a source runs once). Counters (`stats`) are plain
    integers updated by the source thread and copied on read.
    """

    def __init__(self, options: RtpOptions) -> None:
        """Binds the UDP socket(s).

        Raises:
            SourceError: When a port cannot be bound.
        """
        self.options = options
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._sockets: list[tuple[socket.socket, Speaker | None]] = []
        try:
            if options.customer_port is None:
                self._sockets.append((self._bind(options.port), None))
            else:
                self._sockets.append((self._bind(options.port), Speaker.AGENT))
                self._sockets.append((self._bind(options.customer_port), Speaker.CUSTOMER))
        except OSError:
            self.close()
            raise
        self.ports = tuple(sock.getsockname()[1] for sock, _ in self._sockets)
        self.name = f"rtp://{options.host}:{','.join(map(str, self.ports))}"
        self._ssrc_map = dict(options.ssrc_map)
        self._window_s = options.jitter_ms / 1000.0
        self._max_gap = round(options.max_gap_s * CLOCK_RATE)
        self._bank = round((options.jitter_ms + options.gap_slack_ms) / 1000.0 * CLOCK_RATE)
        self._buffer = bytearray(options.max_datagram)
        self._call: _Call | None = None
        self._sink: SourceSink | None = None
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.options.receive_buffer)
            sock.bind((self.options.host, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot bind UDP {self.options.host}:{port}: {exc}") from exc
        return sock

    def close(self) -> None:
        """Closes the sockets (`run` does this itself when it returns)."""
        for sock, _ in self._sockets:
            sock.close()

    def stats(self) -> Mapping[str, int]:
        """Counters since start: packets, bytes, audio_packets, lost, late, duplicate,
        malformed, unknown_payload, dtmf (key presses), calls, rtcp, unknown_ssrc, restarts,
        filled_samples (silence put in for lost or missing audio), foreign_source (packets
        from an address other than the one their SSRC or port is locked to), clock_jumps
        (packets whose timestamp jumped further than the wall clock allows) and gap_rejected
        (samples of those jumps not filled)."""
        return dict(self._counters)

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Receives until `stop` is set; ends the open call with `stopped` and closes the sockets.

        Wakes at least every 100 ms to check `stop` and the inactivity timeout, and every
        20 ms while a jitter buffer holds packets, so a gap is given up on time.
        """
        self._sink = sink
        selector = selectors.DefaultSelector()
        for sock, speaker in self._sockets:
            selector.register(sock, selectors.EVENT_READ, speaker)
        reason = "stopped"
        try:
            while not stop.is_set():
                holding = self._call is not None and any(
                    ch.stream is not None and len(ch.stream.jitter)
                    for ch in self._call.channels.values()
                )
                for key, _ in selector.select(0.02 if holding else 0.1):
                    self._drain(sink, key.fileobj, key.data)  # type: ignore[arg-type]
                self.tick(sink, time.monotonic())
        except BaseException as exc:
            reason = f"error: {exc}"
            raise
        finally:
            selector.close()
            self.finish(sink, reason)
            self.close()

    # -- receiving ---------------------------------------------------------------------

    def _drain(self, sink: SourceSink, sock: socket.socket, speaker: Speaker | None) -> None:
        buffer = self._buffer
        for _ in range(_BURST):
            try:
                # MSG_TRUNC makes Linux report a datagram's real size even when it is cut.
                size, address = sock.recvfrom_into(buffer, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                return
            self.receive(sink, memoryview(buffer)[: min(size, len(buffer))], speaker,
                         time.monotonic(), oversized=size > len(buffer), address=address)

    def receive(
        self,
        sink: SourceSink,
        data: bytes | memoryview,
        speaker: Speaker | None,
        now: float,
        *,
        oversized: bool = False,
        address: object = None,
    ) -> None:
        """Handles one datagram as if it arrived at `now`.

        `run` calls this for every datagram; together with `tick` and `finish` it is the
        whole source without sockets, so tests can drive the clock.

        Args:
            sink: Where calls, chunks and key presses go.
            data: The datagram.
            speaker: The channel of the port it came in on; None on a shared port.
            now: Arrival time, `time.monotonic()` seconds.
            oversized: The datagram was larger than `max_datagram` and was cut.
            address: The sender's (host, port); None skips the address lock (tests without
                sockets).
        """
        self._sink = sink
        counters = self._counters
        counters["packets"] += 1
        counters["bytes"] += len(data)
        if oversized:
            self._malformed("datagram larger than max_datagram")
            return
        if len(data) >= 2 and data[0] >> 6 == 2 and data[1] in _RTCP_TYPES:
            counters["rtcp"] += 1
            return
        try:
            packet = parse_rtp(data)
        except RtpPacketError as exc:
            self._malformed(exc.reason)
            return
        shared = speaker is None
        if shared:
            speaker = self._channel_of(packet.ssrc)
            if speaker is None:
                counters["unknown_ssrc"] += 1
                self._note("unknown_ssrc", "%s: dropped a packet of SSRC %#x from %s: both "
                           "channels are taken (or it is not in ssrc_map)", self.name,
                           packet.ssrc, address, level=logging.INFO)
                return
        assert speaker is not None
        slot: object = packet.ssrc if shared else speaker
        if address is not None and self._call is not None:
            owner, heard = self._call.owners.get(slot, (address, now))
            if owner != address and now - heard < self.options.source_lock_s:
                counters["foreign_source"] += 1
                self._call.foreign += 1
                self._note("foreign", "%s: dropped a packet for %s (SSRC %#x) from %s: the "
                           "stream is locked to %s", self.name, speaker, packet.ssrc, address,
                           owner, level=logging.WARNING)
                return
            if owner != address:
                log.warning("%s: %s (SSRC %#x) moved from %s to %s after %.1f s of silence",
                            self.name, speaker, packet.ssrc, owner, address, now - heard)
        if self._call is None:
            self._start_call(now)
        call = self._live
        if address is not None:
            call.owners[slot] = (address, now)
        if not self._ssrc_map:
            call.learned.setdefault(packet.ssrc, speaker)
        channel = call.channels[speaker]
        stream = channel.stream
        if stream is not None and stream.ssrc == packet.ssrc:
            ext_ts = extend_ts(packet.timestamp, stream.ref_ts)
            highest = stream.jitter.highest
            seq_jump = (packet.sequence - highest) % 65536 if highest is not None else 0
            if abs(ext_ts - stream.ref_ts) > self._max_gap or _MAX_DROPOUT < seq_jump < (
                65536 - _MAX_DROPOUT
            ):
                counters["restarts"] += 1
                stream = None
        elif stream is not None:
            counters["restarts"] += 1  # a new SSRC on this channel: the sender restarted
            stream = None
        if stream is None:
            self._flush(channel)
            stream = channel.stream = _Stream(
                packet.ssrc, self._window_s, now, packet.timestamp, self._bank
            )
            ext_ts = packet.timestamp
        verdict, _ = stream.jitter.classify(packet.sequence)
        if verdict is Verdict.ACCEPTED:
            call.last_packet = now
            stream.ref_ts = ext_ts
            ts = self._bound_jump(stream, ext_ts, now)
            item = self._item(packet, ts)
            stream.jitter.push(packet.sequence, item, now)
            if item.pcm is not None:
                stream.end_ts = max(stream.end_ts, ts + len(item.pcm))
        else:
            counters[str(verdict)] += 1
        for released in stream.jitter.pop_ready(now):
            self._play(channel, stream, released.item, released.lost_before)

    def _bound_jump(self, stream: _Stream, ext_ts: int, now: float) -> int:
        """The packet's timestamp on the stream's clock, with a forward jump bounded by the
        wall clock (see the module docstring); counts and logs what is not filled."""
        elapsed = max(0, round((now - stream.last_arrival) * CLOCK_RATE))
        stream.last_arrival = now
        ts = ext_ts - stream.offset
        gap = ts - stream.end_ts
        if gap <= elapsed:
            # Within the wall time: unused wall time refills the bank.
            stream.bank = min(self._bank, stream.bank + elapsed - max(gap, 0))
            return ts
        fill = min(gap, elapsed + stream.bank)
        stream.bank -= fill - elapsed
        excess = gap - fill
        if excess > 0:
            stream.offset += excess
            self._counters["clock_jumps"] += 1
            self._counters["gap_rejected"] += excess
            if self._call is not None:
                self._call.gap_rejected += excess
            self._note("jump", "%s: SSRC %#x jumped %.2f s ahead after %.2f s of wall time; "
                       "%.2f s not filled", self.name, stream.ssrc, gap / CLOCK_RATE,
                       elapsed / CLOCK_RATE, excess / CLOCK_RATE, level=logging.WARNING)
        return ts - excess

    def _channel_of(self, ssrc: int) -> Speaker | None:
        if self._ssrc_map:
            return self._ssrc_map.get(ssrc)
        # Learned per call: the first SSRC heard is the agent, the second the customer.
        learned = self._call.learned if self._call is not None else {}
        if ssrc in learned:
            return learned[ssrc]
        if len(learned) >= 2:
            return None
        return Speaker.AGENT if not learned else Speaker.CUSTOMER

    def _item(self, packet: RtpPacket, ext_ts: int) -> _Item:
        pt = packet.payload_type
        if pt in (PT_PCMU, PT_PCMA) and len(packet.payload):
            pcm = np.empty(len(packet.payload), dtype=np.int16)
            decode = g711.ulaw_decode_into if pt == PT_PCMU else g711.alaw_decode_into
            decode(packet.payload, pcm)
            return _Item(ext_ts, _Kind.AUDIO, pcm=pcm)
        if pt == self.options.dtmf_payload_type:
            try:
                return _Item(ext_ts, _Kind.DTMF, event=parse_telephone_event(packet.payload))
            except RtpPacketError as exc:
                self._malformed(exc.reason)
                return _Item(ext_ts, _Kind.NOTHING)
        self._counters["unknown_payload"] += 1
        self._note("unknown_payload", "%s: dropped a packet of payload type %d (SSRC %#x)",
                   self.name, pt, packet.ssrc)
        return _Item(ext_ts, _Kind.NOTHING)

    def _malformed(self, reason: str) -> None:
        self._counters["malformed"] += 1
        self._note("malformed", "%s: dropped malformed packet (%s)", self.name, reason)

    def _note(self, kind: str, message: str, *args: object, level: int = logging.DEBUG) -> None:
        """Logs at most one line of each kind per `_LOG_INTERVAL_S`; counts the rest."""
        now = time.monotonic()
        if now - self._last_log.get(kind, -_LOG_INTERVAL_S) >= _LOG_INTERVAL_S:
            log.log(level, message + "; %d more since last report", *args,
                    self._unlogged.get(kind, 0))
            self._last_log[kind] = now
            self._unlogged[kind] = 0
        else:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1

    # -- calls and the clock -----------------------------------------------------------

    def _start_call(self, now: float) -> None:
        self._counters["calls"] += 1
        call = self._call = _Call(new_call_id(f"rtp-{self.ports[0]}"), now)
        self._out.call_started(
            CallInfo(
                call_id=call.call_id,
                agent_id=self.options.agent_id,
                source=self.name,
                started_at=time.time(),
                channels=(Speaker.AGENT, Speaker.CUSTOMER),
                sample_rate=CLOCK_RATE,
            )
        )

    def tick(self, sink: SourceSink, now: float) -> None:
        """Releases what the jitter buffers may release at `now`; ends an inactive call."""
        self._sink = sink
        call = self._call
        if call is None:
            return
        for channel in call.channels.values():
            if channel.stream is not None:
                for released in channel.stream.jitter.pop_ready(now):
                    self._play(channel, channel.stream, released.item, released.lost_before)
        if now - call.last_packet >= self.options.inactivity_timeout_s:
            self._end_call("timeout")

    def finish(self, sink: SourceSink, reason: str) -> None:
        """Ends the open call, if any, with `reason`, flushing what its buffers hold."""
        self._sink = sink
        if self._call is not None:
            self._end_call(reason)

    def _end_call(self, reason: str) -> None:
        call = self._live
        for channel in call.channels.values():
            self._flush(channel)
        self._call = None
        if call.foreign or call.gap_rejected:
            log.warning("%s: call %s ended (%s): %d packets from other addresses dropped, "
                        "%.1f s of timestamp jumps not filled", self.name, call.call_id, reason,
                        call.foreign, call.gap_rejected / CLOCK_RATE)
        self._out.call_ended(call.call_id, reason)

    def _flush(self, channel: _Channel) -> None:
        stream = channel.stream
        if stream is None:
            return
        for released in stream.jitter.flush():
            self._play(channel, stream, released.item, released.lost_before)
        self._dtmf_report(channel, stream)
        channel.stream = None

    def _play(self, channel: _Channel, stream: _Stream, item: _Item, lost_before: int) -> None:
        call = self._live
        self._counters["lost"] += lost_before
        anchoring = stream.base_ts is None
        if stream.base_ts is None:
            stream.base_ts = item.ext_ts
            stream.base_sample = max(
                channel.next_sample, round((stream.arrived - call.t0) * CLOCK_RATE)
            )
        position = stream.base_sample + item.ext_ts - stream.base_ts
        if item.kind is _Kind.DTMF:
            self._dtmf(channel, stream, item, position)
            return
        if item.kind is not _Kind.AUDIO:
            return
        self._counters["audio_packets"] += 1
        pcm = item.pcm
        assert pcm is not None  # audio items carry their samples
        if position < channel.next_sample:
            # Overlaps what was already played (a sender that reuses timestamps): keep only
            # the new part so the channel stays one continuous run of samples.
            pcm = pcm[channel.next_sample - position :]
            position = channel.next_sample
            if not len(pcm):
                return
        elif position > channel.next_sample:
            gap = position - channel.next_sample
            if not anchoring:  # silence before a stream begins is not missing audio
                self._counters["filled_samples"] += gap
            self._out.audio(
                AudioChunk(call.call_id, channel.speaker, np.zeros(gap, np.int16), CLOCK_RATE,
                           channel.next_sample)
            )
        self._out.audio(AudioChunk(call.call_id, channel.speaker, pcm, CLOCK_RATE, position))
        channel.next_sample = position + len(pcm)

    def _dtmf(self, channel: _Channel, stream: _Stream, item: _Item, position: int) -> None:
        event = item.event
        assert event is not None  # DTMF items carry their telephone event
        if stream.dtmf_ts != item.ext_ts:
            # A new key press: report the previous one if its end packets were all lost.
            self._dtmf_report(channel, stream)
            stream.dtmf_ts = item.ext_ts
            stream.dtmf_done = event.event >= len(_DTMF_DIGITS)  # not a key: never reported
            stream.dtmf_digit = _DTMF_DIGITS[event.event] if not stream.dtmf_done else ""
            stream.dtmf_duration = 0
            stream.dtmf_sample = max(position, 0)
        stream.dtmf_duration = max(stream.dtmf_duration, event.duration)
        if event.end:
            self._dtmf_report(channel, stream)

    def _dtmf_report(self, channel: _Channel, stream: _Stream) -> None:
        if stream.dtmf_done:
            return
        stream.dtmf_done = True
        self._counters["dtmf"] += 1
        self._out.dtmf(
            self._live.call_id,
            channel.speaker,
            stream.dtmf_digit,
            stream.dtmf_sample / CLOCK_RATE,
            stream.dtmf_duration / CLOCK_RATE,
        )

    @property
    def _out(self) -> SourceSink:
        """The sink of the call in progress (set by `receive`, `tick` and `finish`)."""
        assert self._sink is not None, "delivering outside receive/tick/finish"
        return self._sink

    @property
    def _live(self) -> _Call:
        """The call in progress (only read where one is known to be open)."""
        assert self._call is not None, "no call in progress"
        return self._call

    def __enter__(self) -> RtpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.close()
