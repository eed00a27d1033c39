"""SIP messages on the wire (RFC 3261 section 7): parsing, framing on streams, building.

Only what a user agent that answers calls needs: the start line, headers (with the compact
forms of section 7.3.3), the body, name-addr values (`"Name" <sip:u@h>;tag=x`), and responses
built from a request. Parsing is strict where a wrong guess would misroute a call (start line,
Call-ID, CSeq, Content-Length) and lenient elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qa.errors import SignallingError

#: RFC 3261 section 7.3.3 compact header names.
_COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
}
_REQUEST_LINE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")
_NAME_ADDR = re.compile(r'^\s*(?:"(?:[^"\\]|\\.)*"|[^<"]*)?<([^>]*)>(.*)$')

REASONS = {
    100: "Trying", 200: "OK", 400: "Bad Request", 405: "Method Not Allowed",
    481: "Call/Transaction Does Not Exist", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable",
}


def _error(reason: str) -> SignallingError:
    return SignallingError("SIP", reason)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One SIP request or response.

    Attributes:
        method: The request method (`INVITE`, ...), '' for a response.
        uri: The Request-URI, '' for a response.
        status: The status code of a response, 0 for a request.
        reason: The reason phrase of a response.
        headers: `(name, value)` pairs in order, names lower-cased and compact forms expanded;
            a header line with commas is kept as one value (see `values`).
        body: The message body (exactly Content-Length bytes when the header is present).
    """

    method: str
    uri: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str, default: str = "") -> str:
        """The first value of header `name` (any case, compact forms too), else `default`."""
        name = canonical(name)
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def all(self, name: str) -> list[str]:
        """Every header line of `name`, in order (comma-joined values kept whole)."""
        name = canonical(name)
        return [value for key, value in self.headers if key == name]

    @property
    def call_id(self) -> str:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        """`(number, method)` of the CSeq header (checked when parsing)."""
        number, method = self.get("cseq").split()
        return int(number), method.upper()


def canonical(name: str) -> str:
    """A header name as `SipMessage.headers` keeps it: lower case, compact forms expanded."""
    name = name.strip().lower()
    return _COMPACT.get(name, name)


def parse_message(data: bytes) -> SipMessage:
    """Parses one whole SIP message (a UDP datagram, or one framed by `split_stream`).

    Raises:
        SignallingError: Naming what is wrong: start line, header line, a missing mandatory
            header (Call-ID, CSeq, From, To, Via), a bad CSeq or Content-Length, a short body.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")  # bare LF line ends are tolerated
        if not sep:
            raise _error("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(f"headers are not UTF-8 ({exc.reason})") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    method = uri = reason = ""
    status = 0
    if match := _REQUEST_LINE.match(start):
        method, uri = match.group(1).upper(), match.group(2)
    elif match := _STATUS_LINE.match(start):
        status, reason = int(match.group(1)), match.group(2)
    else:
        raise _error(f"bad start line {start[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            raise _error(f"bad header line {line[:60]!r}")
        headers.append((canonical(name), value.strip()))
    message = SipMessage(method, uri, status, reason, tuple(headers), body)
    for needed in ("call-id", "cseq", "from", "to", "via"):
        if not message.get(needed):
            raise _error(f"missing {needed} header")
    parts = message.get("cseq").split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise _error(f"bad CSeq {message.get('cseq')!r}")
    length = message.get("content-length")
    if length:
        if not length.isdigit():
            raise _error(f"bad Content-Length {length!r}")
        if int(length) > len(body):
            raise _error(f"body shorter than Content-Length ({len(body)} < {length})")
        body = body[: int(length)]
    return SipMessage(method, uri, status, reason, tuple(headers), body)


def split_stream(buffer: bytearray, max_size: int) -> bytes | None:
    """Takes one whole message off the front of a stream buffer (TCP), or None for 'need more'.

    Leading CRLFs (RFC 5626 keep-alives) are dropped. On a stream, Content-Length frames the
    body (RFC 3261 section 18.3); a missing one means no body.

    Raises:
        SignallingError: The headers or the whole message would exceed `max_size`, or
            Content-Length is not a number; the stream cannot be resynchronised after that.
    """
    while buffer[:2] == b"\r\n":
        del buffer[:2]
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > max_size:
            raise _error(f"headers longer than {max_size} bytes")
        return None
    length = 0
    for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if canonical(name.decode("latin-1")) == "content-length":
            value = value.strip()
            if not value.isdigit():
                raise _error(f"bad Content-Length {value[:20]!r}")
            length = int(value)
    total = end + 4 + length
    if total > max_size:
        raise _error(f"message of {total} bytes is larger than {max_size}")
    if len(buffer) < total:
        return None
    message = bytes(buffer[:total])
    del buffer[:total]
    return message


@dataclass(frozen=True, slots=True)
class Address:
    """A From/To/Contact value: `uri` and its header parameters (`tag`, ...)."""

    uri: str
    params: tuple[tuple[str, str], ...]

    @property
    def tag(self) -> str:
        return dict(self.params).get("tag", "")

    @property
    def user(self) -> str:
        """The user part of a sip:/sips:/tel: URI ('' when it has none)."""
        rest = self.uri.partition(":")[2]
        return rest.partition("@")[0] if "@" in rest else ""


def parse_address(value: str) -> Address:
    """Parses a name-addr or addr-spec header value (RFC 3261 section 20.10)."""
    if match := _NAME_ADDR.match(value):
        uri, rest = match.group(1).strip(), match.group(2)
    else:
        # addr-spec: parameters after ';' belong to the header, not the URI (section 20.10).
        uri, _, rest = value.strip().partition(";")
        rest = ";" + rest if rest else ""
    params = []
    for param in rest.split(";"):
        key, _, val = param.strip().partition("=")
        if key:
            params.append((key.lower(), val))
    return Address(uri, tuple(params))


def response(request: SipMessage, status: int, *, to_tag: str = "",
             headers: tuple[tuple[str, str], ...] = (), body: bytes = b"",
             content_type: str = "") -> bytes:
    """Builds the bytes of a response to `request` (RFC 3261 section 8.2.6).

    Via, From, Call-ID and CSeq are copied; To gets `to_tag` unless it has a tag already.
    """
    lines = [f"SIP/2.0 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"Via: {via}" for via in request.all("via")]
    to = request.get("to")
    if to_tag and not parse_address(to).tag:
        to = f"{to};tag={to_tag}"
    lines += [f"From: {request.get('from')}", f"To: {to}", f"Call-ID: {request.call_id}",
              f"CSeq: {request.get('cseq')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def request(method: str, uri: str, headers: tuple[tuple[str, str], ...]) -> bytes:
    """Builds the bytes of a body-less request (the BYE a UAS sends to end a dialog)."""
    lines = [f"{method} {uri} SIP/2.0", *(f"{name}: {value}" for name, value in headers),
             "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
