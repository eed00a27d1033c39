"""Websocket media streams (`ws://HOST:PORT`): one server for Twilio Media Streams
(`/twilio`), Genesys AudioHook (`/audiohook`) and FreeSWITCH `mod_audio_stream` /
`mod_audio_fork` (`/freeswitch`). Each connection is one call (see `sessions`).

Every path is authenticated the way its platform does it, with a secret from the options: a
path whose secret is not set is refused (403) unless `insecure` is set (tests, a trusted
network). Twilio: the `X-Twilio-Signature` header, HMAC-SHA1 of the URL Twilio was given
(`public_url` + path, else `wss://<Host header><path>`) keyed by the account's auth token.
AudioHook: the `X-API-KEY` header. FreeSWITCH: `?token=` in the URL or an `Authorization:
Bearer` header. Connections past `max_connections` get 503; messages larger than
`max_message` close their connection (websocket code 1009), counted in `oversized`; malformed
messages are counted and dropped, the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from qa.errors import ConfigError, SignallingError, SourceError
from qa.ids import new_call_id
from qa.sources.base import SourceSink
from qa.sources.wsmedia import formats
from qa.sources.wsmedia.sessions import (
    AudioHookSession,
    Session,
    SessionContext,
    StreamSession,
    TwilioSession,
)

log = logging.getLogger("qa.sources.wsmedia")

COUNTERS = ("connections", "refused", "unauthorised", "messages", "malformed_messages",
            "oversized",
            "ignored", "sequence_errors", "dtmf", "calls", "filled_samples")
PATHS = ("/twilio", "/audiohook", "/freeswitch")


@dataclass(frozen=True, slots=True)
class WsMediaOptions:
    """How `WsMediaSource` listens.

    Attributes:
        host: Address to bind.
        port: TCP port (0 = any free port, see `WsMediaSource.port`).
        twilio_token: The Twilio account's auth token, which signs its requests.
        public_url: The base URL Twilio connects to (`wss://qa.example.com`), for checking
            its signature behind a proxy; '' = `wss://` + the request's Host header.
        audiohook_key: The API key the Genesys AudioHook integration sends.
        stream_token: The token FreeSWITCH sends (`?token=` or `Authorization: Bearer`).
        insecure: Accept paths whose secret is not set, without authentication.
        agent_id: The agent when the stream does not name one.
        agent_parameter: The stream parameter that names the agent (Twilio `<Parameter>`,
            AudioHook input variable, FreeSWITCH metadata key or URL query key).
        max_connections: Connections at once; more get HTTP 503.
        max_message: Largest websocket message taken, in bytes.
    """

    host: str = "127.0.0.1"
    port: int = 8090
    twilio_token: str = ""
    public_url: str = ""
    audiohook_key: str = ""
    stream_token: str = ""
    insecure: bool = False
    agent_id: str = ""
    agent_parameter: str = "agent"
    max_connections: int = 200
    max_message: int = 1 << 16

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("ws options", f"not a TCP port: {self.port}", field="port")
        if self.max_connections < 1 or self.max_message < 1024:
            raise ConfigError("ws options", "max_connections >= 1 and max_message >= 1024 "
                              "needed", field="max_message")


def parse_ws_url(spec: str) -> WsMediaOptions:
    """Reads `ws://HOST:PORT[?twilio_token=..&audiohook_key=..&token=..&public_url=..
    &insecure=1&max_connections=N]`.

    Raises:
        ConfigError: Naming the part of `spec` that is wrong.
    """
    parts = urlsplit(spec)
    if parts.scheme != "ws" or not parts.hostname:
        raise ConfigError(spec, "expected ws://HOST:PORT[?OPTIONS]", field="source")
    try:
        values: dict[str, object] = {"host": parts.hostname,
                                     "port": parts.port if parts.port is not None else 8090}
        names = {"twilio_token": "twilio_token", "audiohook_key": "audiohook_key",
                 "token": "stream_token", "public_url": "public_url",
                 "agent_parameter": "agent_parameter"}
        for key, value in parse_qsl(parts.query):
            if key in names:
                values[names[key]] = value
            elif key == "insecure":
                values["insecure"] = value in ("1", "true", "yes")
            elif key == "max_connections":
                values["max_connections"] = int(value)
            else:
                raise ConfigError(spec, f"unknown option {key!r}", field="source")
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(spec, f"bad port or option: {exc}", field="source") from None
    return WsMediaOptions(**values)  # type: ignore[arg-type]


class WsMediaSource:
    """Serves the websocket media protocols (see the module docstring).

    The socket is bound on construction so that `port` is known before a peer connects;
    `run` serves on it in its own event loop and closes it when it returns.
    """

    def __init__(self, options: WsMediaOptions) -> None:
        """Binds the listening socket.

        Raises:
            SourceError: When the port cannot be bound.
        """
        self.options = options
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((options.host, options.port))
            self._sock.listen(128)
            self._sock.setblocking(False)
        except OSError as exc:
            self._sock.close()
            raise SourceError(f"cannot listen on {options.host}:{options.port}: {exc}") from exc
        self.port = self._sock.getsockname()[1]
        self.name = f"ws://{options.host}:{self.port}"
        self._sessions: set[Session] = set()
        self._calls_made = 0
        self._sink: SourceSink | None = None

    def close(self) -> None:
        """Closes the listening socket (`run` does this itself when it returns)."""
        with contextlib.suppress(OSError):
            self._sock.close()

    def stats(self) -> Mapping[str, int]:
        """Counters since start: connections, refused (over the limit), unauthorised,
        messages, malformed_messages, oversized, ignored, sequence_errors (AudioHook), dtmf,
        calls, filled_samples."""
        return dict(self._counters)

    def run(self, sink: SourceSink, stop: threading.Event) -> None:
        """Serves until `stop` is set; then ends every open call with `stopped`."""
        self._sink = sink
        try:
            asyncio.run(self._serve(stop))
        finally:
            for session in list(self._sessions):
                session.closed("stopped")
            self.close()

    async def _serve(self, stop: threading.Event) -> None:
        async with serve(self._handle, sock=self._sock, process_request=self._check,
                         max_size=self.options.max_message, ping_interval=None) as server:
            while not stop.is_set():
                await asyncio.sleep(0.1)
            for session in list(self._sessions):
                session.closed("stopped")
            server.close(close_connections=True)

    def _new_call_id(self, kind: str) -> str:
        """The one place call ids are made: `<protocol>-<port>-<UUIDv7>`, unique across runs."""
        self._calls_made += 1
        return new_call_id(f"{kind}-{self.port}")

    # -- the handshake -----------------------------------------------------------------

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path not in PATHS:
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown path; use one of "
                                      f"{', '.join(PATHS)}\n")
        if len(self._sessions) >= self.options.max_connections:
            self._counters["refused"] += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many streams\n")
        if not self._authorised(path, request):
            self._counters["unauthorised"] += 1
            log.warning("%s: refused %s from %s: bad or missing credentials", self.name, path,
                        connection.remote_address)
            return connection.respond(HTTPStatus.FORBIDDEN, "bad or missing credentials\n")
        return None

    def _authorised(self, path: str, request: Request) -> bool:
        options = self.options
        headers = request.headers
        if path == "/twilio":
            if not options.twilio_token:
                return options.insecure
            base = options.public_url.rstrip("/") or f"wss://{headers.get('Host', '')}"
            expected = formats.twilio_signature(options.twilio_token, base + request.path)
            return formats.check_secret(expected, headers.get("X-Twilio-Signature", ""))
        if path == "/audiohook":
            if not options.audiohook_key:
                return options.insecure
            return formats.check_secret(options.audiohook_key, headers.get("X-API-KEY", ""))
        if not options.stream_token:
            return options.insecure
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[-1]
        bearer = headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return (formats.check_secret(options.stream_token, token)
                or formats.check_secret(options.stream_token, bearer))

    # -- a connection ------------------------------------------------------------------

    def _session(self, request: Request) -> Session:
        parts = urlsplit(request.path)
        assert self._sink is not None, "serving outside run"
        context = SessionContext(self._sink, self._new_call_id, f"{self.name}{parts.path}",
                                 self.options.agent_id, self.options.agent_parameter,
                                 self._counters)
        if parts.path == "/twilio":
            return TwilioSession(context)
        if parts.path == "/audiohook":
            return AudioHookSession(context)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            rate = int(query.get("rate", "8000"))
        except ValueError:
            raise SignallingError("FreeSWITCH", f"bad rate {query['rate']!r}") from None
        return StreamSession(context, mix=query.get("mix", "mono"), rate=rate,
                             agent=query.get(self.options.agent_parameter, ""))

    async def _handle(self, connection: ServerConnection) -> None:
        self._counters["connections"] += 1
        try:
            assert connection.request is not None  # set once the handshake is done
            session = self._session(connection.request)
        except SignallingError as exc:
            self._counters["malformed_messages"] += 1
            await connection.close(1008, exc.reason[:120])
            return
        self._sessions.add(session)
        reason = "error: connection lost"
        try:
            async for message in connection:
                self._counters["messages"] += 1
                if session.done:
                    self._counters["ignored"] += 1
                    continue
                now = time.monotonic()
                try:
                    if isinstance(message, str):
                        replies = session.text(message, now)
                    else:
                        replies = session.binary(message, now)
                except SignallingError as exc:
                    self._counters["malformed_messages"] += 1
                    log.info("%s: malformed %s message: %s", self.name, exc.protocol, exc.reason)
                    if session.failed:
                        reason = f"error: {exc.reason}"
                        await connection.close(1002, exc.reason[:120])
                        break
                    continue
                for reply in replies:
                    await connection.send(reply)
            if isinstance(session, StreamSession):
                reason = "hangup"  # FreeSWITCH ends a stream by closing it
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 1009 or (
                    exc.sent is not None and exc.sent.code == 1009):
                self._counters["oversized"] += 1
                reason = "error: message too large"
        except Exception:  # a bug in one session must not stop the others
            log.exception("%s: stream failed", self.name)
            reason = "error: internal"
        finally:
            self._sessions.discard(session)
            session.closed(reason)
