"""Log hygiene: secrets never reach a log line, whoever writes it.

The agent prompt page authenticates with `?token=...` in its URL, and the `websockets`
library logs every request line at debug level (`qa -vv run`), so a token would land in the
log and from there in every log shipper. `SecretFilter` sits on the output handlers, where it
sees the records of every logger (ours and the libraries'), and blanks the secret part.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SecretFilter", "scrub", "install"]

# `token=` / `access_token=` query parameters, and Authorization / Cookie header values.
_SECRETS = re.compile(
    r"(?P<key>(?:[?&;]|\b)(?:access_)?token=)[^&\s\"'#]+"
    r"|(?P<header>\b(?:authorization|cookie|set-cookie)\s*[:=]\s*)[^\r\n]+"
    # The password of a URL's user (a postgresql:// call store) and libpq's `password=`.
    r"|(?P<userinfo>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^@/\s]+(?=@)"
    # A user part with no password is a token (`nats://TOKEN@host`, NATS token auth).
    r"|(?P<token>\b[a-z][a-z0-9+.-]*://)[^:/?#@\s]+(?=@)"
    r"|(?P<password>\bpassword=)[^&\s\"']+",
    re.IGNORECASE,
)


_FORMAT = logging.Formatter()


def scrub(text: str) -> str:
    """`text` with token values and credential headers replaced by `[REDACTED]`."""
    return _SECRETS.sub(
        lambda m: (m["key"] or m["header"] or m["userinfo"] or m["token"] or m["password"])
        + "[REDACTED]", text)


class SecretFilter(logging.Filter):
    """A handler filter that rewrites records carrying a secret (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # A traceback ends with the exception's message, which may hold the URL it failed
            # on (`cannot connect to NATS at nats://user:pass@...`); handlers print this text.
            record.exc_text = scrub(_FORMAT.formatException(record.exc_info))
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Adds a `SecretFilter` to every handler of `logger` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
