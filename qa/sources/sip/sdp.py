"""SDP offers and answers (RFC 4566, RFC 3264) for a receive-only G.711 endpoint.

`parse_sdp` reads what an offer says per media line (port, payload types, rtpmap, direction,
label); `answer` picks PCMU or PCMA and telephone-event from each audio line of the offer and
names the local address and port the RTP must go to. Lines this endpoint does not take are
answered with port 0 (rejected), so the answer always has as many m= lines as the offer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from qa.errors import SignallingError
from qa.sources.rtp import PT_PCMA, PT_PCMU

#: Static payload types G.711 is known by when an offer has no rtpmap for them (RFC 3551).
_STATIC = {PT_PCMU: "pcmu", PT_PCMA: "pcma"}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class Media:
    """One m= section.

    Attributes:
        kind: `audio`, `video`, ...
        port: The port the offerer receives on (0 = the line is disabled).
        proto: Transport, e.g. `RTP/AVP`.
        formats: Payload types in the offerer's order of preference.
        rtpmap: Payload type -> lower-cased encoding name (`pcmu`, `telephone-event`, ...).
        direction: `sendrecv`, `sendonly`, `recvonly` or `inactive` (the session's by default).
        label: The `a=label` value (RFC 4574), which SIPREC metadata points at; '' if none.
        address: The connection address that applies to this line.
    """

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    rtpmap: tuple[tuple[str, str], ...]
    direction: str
    label: str
    address: str

    def encoding(self, pt: str) -> str:
        mapped = dict(self.rtpmap).get(pt)
        if mapped is None and pt.isdigit():
            return _STATIC.get(int(pt), "")
        return mapped or ""


def parse_sdp(body: bytes) -> tuple[Media, ...]:
    """Parses a session description into its media lines.

    Raises:
        SignallingError: Not UTF-8, no `v=0`, or a malformed m= line.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignallingError("SDP", "not UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SignallingError("SDP", "does not start with v=0")
    session_address, session_direction = "", "sendrecv"
    sections: list[dict] = []
    for line in lines[1:]:
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            raise SignallingError("SDP", f"bad line {line[:60]!r}")
        current = sections[-1] if sections else None
        if kind == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].partition("/")[0].isdigit():
                raise SignallingError("SDP", f"bad m= line {line[:60]!r}")
            sections.append({"kind": parts[0], "port": int(parts[1].partition("/")[0]),
                             "proto": parts[2], "formats": tuple(parts[3:]), "rtpmap": [],
                             "direction": None, "label": "", "address": ""})
        elif kind == "c":
            address = value.split()[-1].partition("/")[0] if value.split() else ""
            if current is None:
                session_address = address
            else:
                current["address"] = address
        elif kind == "a":
            name, _, rest = value.partition(":")
            if name in _DIRECTIONS:
                if current is None:
                    session_direction = name
                else:
                    current["direction"] = name
            elif current is not None and name == "rtpmap":
                pt, _, encoding = rest.partition(" ")
                current["rtpmap"].append((pt, encoding.partition("/")[0].strip().lower()))
            elif current is not None and name == "label":
                current["label"] = rest.strip()
    return tuple(
        Media(s["kind"], s["port"], s["proto"], s["formats"], tuple(s["rtpmap"]),
              s["direction"] or session_direction, s["label"], s["address"] or session_address)
        for s in sections
    )


@dataclass(frozen=True, slots=True)
class Choice:
    """What the answer accepts on one audio line: the G.711 payload type and DTMF's (or None)."""

    audio_pt: int
    dtmf_pt: int | None


def choose(media: Media) -> Choice | None:
    """The first G.711 format of an audio line and its telephone-event type; None if unusable."""
    if media.kind != "audio" or media.port == 0 or "RTP/AVP" not in media.proto:
        return None
    # The RTP receiver decodes G.711 by its static payload types only (RFC 3551).
    audio = next((int(pt) for pt in media.formats
                  if pt in ("0", "8") and media.encoding(pt) == _STATIC[int(pt)]), None)
    if audio is None:
        return None
    dtmf = next((int(pt) for pt in media.formats
                 if media.encoding(pt) == "telephone-event" and pt.isdigit()), None)
    return Choice(audio, dtmf)


def answer(offer: tuple[Media, ...], address: str,
           ports: tuple[int | None, ...], *, session_id: int | None = None) -> bytes:
    """Builds the answer: line i is received on `ports[i]` (None = rejected with port 0).

    Accepted lines are `recvonly`: this endpoint listens and never sends media.
    """
    sid = session_id if session_id is not None else int(time.time())
    lines = ["v=0", f"o=qa {sid} {sid} IN IP4 {address}", "s=qa", f"c=IN IP4 {address}",
             "t=0 0"]
    for media, port in zip(offer, ports, strict=True):
        choice = choose(media) if port is not None else None
        if choice is None:
            lines.append(f"m={media.kind} 0 {media.proto} {media.formats[0]}")
            continue
        pts = [choice.audio_pt] + ([choice.dtmf_pt] if choice.dtmf_pt is not None else [])
        lines.append(f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}")
        name = "PCMU" if media.encoding(str(choice.audio_pt)) == "pcmu" else "PCMA"
        lines.append(f"a=rtpmap:{choice.audio_pt} {name}/8000")
        if choice.dtmf_pt is not None:
            lines += [f"a=rtpmap:{choice.dtmf_pt} telephone-event/8000",
                      f"a=fmtp:{choice.dtmf_pt} 0-15"]
        if media.label:
            lines.append(f"a=label:{media.label}")
        lines += ["a=ptime:20", "a=recvonly"]
    return ("\r\n".join(lines) + "\r\n").encode()
