"""Websocket media streams: wire formats (`formats`), one call per connection (`sessions`),
the server (`server`) for Twilio Media Streams, Genesys AudioHook and FreeSWITCH."""

from qa.sources.wsmedia.server import WsMediaOptions, WsMediaSource, parse_ws_url

__all__ = ["WsMediaOptions", "WsMediaSource", "parse_ws_url"]
