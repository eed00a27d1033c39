"""Asterisk AudioSocket: frames on the wire (`frames`) and the server that joins legs (`server`)."""

from qa.sources.audiosocket.server import (
    AudioSocketOptions,
    AudioSocketSource,
    parse_audiosocket_url,
)

__all__ = ["AudioSocketOptions", "AudioSocketSource", "parse_audiosocket_url"]
