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
