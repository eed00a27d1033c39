"""SIPREC on the wire (RFC 7866 recording sessions, RFC 7865 metadata): the multipart body of a
recording INVITE and the `rs-metadata` XML that says who sends which stream.

`split_multipart` cuts a `multipart/mixed` body into its parts; `parse_metadata` reads the
participants (AOR and name), the streams (id and SDP label) and which participant sends which
stream; `Metadata.merged` applies a `partial` update (a re-INVITE or UPDATE) to what was
known; `assign` decides agent and customer among the participants. Nothing here touches a
socket.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace

from qa.errors import SignallingError
from qa.types import Speaker

_NS = "{urn:ietf:params:xml:ns:recording:1}"
_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


def _error(reason: str) -> SignallingError:
    return SignallingError("SIPREC", reason)


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its lower-cased headers and its content."""

    headers: tuple[tuple[str, str], ...]
    content: bytes

    @property
    def content_type(self) -> str:
        return dict(self.headers).get("content-type", "text/plain").split(";")[0].strip().lower()


def split_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a `multipart/mixed` body (RFC 2046 section 5.1).

    Raises:
        SignallingError: No boundary parameter, or no closing delimiter.
    """
    match = _BOUNDARY.search(content_type)
    if not match:
        raise _error("multipart body without a boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode()
    if delimiter + b"--" not in body:
        raise _error("multipart body without its closing delimiter")
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = chunk.partition(b"\n\n")
        headers = []
        for line in head.decode("utf-8", "replace").splitlines():
            name, colon, value = line.partition(":")
            if colon:
                headers.append((name.strip().lower(), value.strip()))
        # The CRLF before the next delimiter belongs to the delimiter (RFC 2046).
        parts.append(Part(tuple(headers), content.removesuffix(b"\r\n").removesuffix(b"\n")))
    return parts


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant of the recorded call: its address of record and display name."""

    aor: str
    name: str

    @property
    def user(self) -> str:
        rest = self.aor.partition(":")[2]
        return rest.partition("@")[0] if "@" in rest else rest


@dataclass(frozen=True, slots=True)
class Metadata:
    """What the recording metadata says, as far as who-speaks-where goes.

    Attributes:
        complete: `datamode` was `complete` (a full snapshot) rather than `partial`.
        participants: participant_id -> Participant, in document order.
        labels: stream_id -> the SDP `a=label` of its m= line.
        sends: participant_id -> the stream_ids it sends.
    """

    complete: bool
    participants: tuple[tuple[str, Participant], ...]
    labels: tuple[tuple[str, str], ...]
    sends: tuple[tuple[str, tuple[str, ...]], ...]

    def merged(self, update: Metadata) -> Metadata:
        """This metadata with `update` applied: a complete update replaces it, a partial
        one adds and overrides participants, streams and their associations."""
        if update.complete:
            return update
        return replace(
            update,
            participants=tuple({**dict(self.participants), **dict(update.participants)}.items()),
            labels=tuple({**dict(self.labels), **dict(update.labels)}.items()),
            sends=tuple({**dict(self.sends), **dict(update.sends)}.items()),
        )


def parse_metadata(xml: bytes) -> Metadata:
    """Reads RFC 7865 recording metadata.

    Raises:
        SignallingError: Not well-formed XML, a DTD (refused: entity expansion), or a root
            other than `recording`.
    """
    # The DTD check reads bytes, so the text must be UTF-8: in UTF-16 (which expat reads,
    # with or without a byte-order mark) `<!DOCTYPE` is not these bytes, and a DTD with its
    # entities went through. UTF-16 without a mark is valid UTF-8, but full of NULs, which
    # no XML text may hold.
    try:
        xml.decode("utf-8")
    except UnicodeDecodeError:
        raise _error("metadata is not UTF-8") from None
    if b"\0" in xml:
        raise _error("metadata is not UTF-8 (NUL bytes)")
    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
        raise _error("metadata with a DTD is refused")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise _error(f"metadata is not well-formed XML ({exc})") from None
    if root.tag != f"{_NS}recording":
        raise _error(f"metadata root is {root.tag!r}, not recording")
    mode = (root.findtext(f"{_NS}datamode") or "complete").strip()
    participants = []
    for element in root.iter(f"{_NS}participant"):
        pid = element.get("participant_id") or element.get("id") or ""
        name_id = element.find(f"{_NS}nameID")
        aor = name_id.get("aor", "") if name_id is not None else ""
        name = (name_id.findtext(f"{_NS}name") or "") if name_id is not None else ""
        if pid:
            participants.append((pid, Participant(aor.strip(), name.strip())))
    labels = []
    for element in root.iter(f"{_NS}stream"):
        sid = element.get("stream_id") or element.get("id") or ""
        label = (element.findtext(f"{_NS}label") or "").strip()
        if sid and label:
            labels.append((sid, label))
    sends = []
    for element in root.iter(f"{_NS}participantstreamassoc"):
        pid = element.get("participant_id") or ""
        sent = tuple((s.text or "").strip() for s in element.findall(f"{_NS}send"))
        if pid:
            sends.append((pid, sent))
    return Metadata(mode == "complete", tuple(participants), tuple(labels), tuple(sends))


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who is who in a recording: SDP label -> speaker, and the agent's id."""

    speakers: tuple[tuple[str, Speaker], ...]
    agent_id: str


def assign(metadata: Metadata, agent_pattern: str) -> Assignment:
    """Decides the speakers: a participant whose AOR or name matches `agent_pattern`
    (searched, case-insensitive) is the agent and the others customers; when none matches,
    the first participant is the customer (the caller into the centre) and the second the
    agent. The agent id is the agent's AOR user part (its name when the AOR has none).
    A stream no participant sends gets no speaker (its audio is dropped, and counted)."""
    people = list(dict(metadata.participants).items())
    roles: dict[str, Speaker] = {}
    if agent_pattern:
        for pid, person in people:
            hit = any(re.search(agent_pattern, value, re.IGNORECASE)
                      for value in (person.aor, person.name) if value)
            roles[pid] = Speaker.AGENT if hit else Speaker.CUSTOMER
    if Speaker.AGENT not in roles.values():
        roles = {pid: (Speaker.CUSTOMER if i == 0 else Speaker.AGENT)
                 for i, (pid, _) in enumerate(people)}
    labels = dict(metadata.labels)
    speakers = {}
    for pid, streams in metadata.sends:
        for sid in streams:
            if sid in labels and pid in roles:
                speakers[labels[sid]] = roles[pid]
    agent = next((person for pid, person in people if roles.get(pid) is Speaker.AGENT), None)
    agent_id = (agent.user or agent.name) if agent is not None else ""
    return Assignment(tuple(speakers.items()), agent_id)
