"""One error hierarchy for the whole package.

Each class also subclasses the matching built-in, so callers that catch `ValueError` or
`OSError` keep working, and carries the data needed to act on it. The command line turns
any `QAError` into one message and exit status 2.
"""

from __future__ import annotations


class QAError(Exception):
    """Base of every error this package raises on purpose."""


class AudioFileError(QAError, ValueError):
    """An audio file is missing, unreadable, corrupt or in a format we do not take."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(QAError, ValueError):
    """A configuration or rule file is invalid; names the file, line and field."""

    def __init__(
        self, path: str, reason: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.field = field
        where = path if line is None else f"{path}:{line}"
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {reason}" if what else f"{where}: {reason}")


class RuleFileError(ConfigError):
    """A rule pack does not follow the schema in docs/rules.md."""


class ModelError(QAError, RuntimeError):
    """A Whisper model is missing, incomplete or fails verification."""


class SourceError(QAError, RuntimeError):
    """An audio source (sound card, RTP socket, file) cannot be opened or fails."""


class DependencyError(QAError, ImportError):
    """An optional dependency is not installed; the message says what to install."""


class StoreError(QAError, RuntimeError):
    """The call store cannot be opened or refuses a change (unknown item, points out of range)."""


class CallNotFoundError(QAError, KeyError):
    """No call with this id is in the call store."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        super().__init__(call_id)

    def __str__(self) -> str:
        # KeyError would quote the id; the command line prints this message as is.
        return f"no call '{self.call_id}' in the call store"


class RtpPacketError(QAError, ValueError):
    """A datagram is not a well-formed RTP packet (RFC 3550); `reason` says which rule it broke."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed RTP packet: {reason}")


class PromptServerError(QAError, OSError):
    """The agent prompt server cannot start (address in use, no permission to bind)."""


class SignallingError(QAError, ValueError):
    """A telephony signalling message (SIP, SDP, AudioSocket frame) is malformed.

    `protocol` names the wire format and `reason` the rule it broke; sources count these and
    go on, they never end a call or a connection's neighbours.
    """

    def __init__(self, protocol: str, reason: str) -> None:
        self.protocol = protocol
        self.reason = reason
        super().__init__(f"malformed {protocol} message: {reason}")


class AudioCodecError(AudioFileError):
    """A WAV file holds a codec the native reader does not decode (`tag`: its format tag);
    `qa.sources.audio.open_audio` hands such files to ffmpeg."""

    def __init__(self, path: str, reason: str, tag: int) -> None:
        self.tag = tag
        super().__init__(path, reason)


class WireFormatError(QAError, ValueError):
    """A message between capture nodes and recognition workers is malformed; names the field."""

    def __init__(self, what: str, reason: str, *, field: str | None = None) -> None:
        self.what = what
        self.reason = reason
        self.field = field
        where = f"{what} field '{field}'" if field else what
        super().__init__(f"{where}: {reason}")


class ClusterError(QAError, RuntimeError):
    """The message server (NATS JetStream) cannot be reached or refused a request."""


class WorkspaceError(QAError, ValueError):
    """The review workspace (`qa serve`, `qa users`) refuses an action: an unknown or
    disabled user, a weak password, a dispute past its limit or deadline."""
