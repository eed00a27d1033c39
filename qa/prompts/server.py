"""The agent prompt server: one port for the agent page (HTTP) and its websocket.

    GET /agent/{agent_id}?token=T   the agent page (`agent.html`)
    GET /ws/{agent_id}?token=T      websocket of JSON messages for that agent's calls

No token gives 401, a wrong token (or another agent's) 403, any other path 404. The server
runs its own asyncio loop in its own thread; `publish` may be called from any thread (the
pipeline's source and worker threads) and hands the message over with
`loop.call_soon_threadsafe`, so a pipeline thread never waits on a slow browser.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from qa.errors import ConfigError, PromptServerError
from qa.prompts.messages import encode
from qa.types import EventKind

__all__ = ["PromptOptions", "PromptServer"]

log = logging.getLogger("qa.prompts")

#: Event kinds pushed to the agent by default: the ones an agent can act on during the call.
DEFAULT_KINDS = (
    EventKind.STEP_DUE,
    EventKind.STEP_MISSED,
    EventKind.FORBIDDEN_PHRASE,
    EventKind.HANDLE_TIME_WARNING,
    EventKind.HANDLE_TIME_BREACH,
)

# Messages a connection may have waiting beyond the replayed history before it is judged too
# slow and closed; the page then reconnects and rebuilds itself from the history.
_BACKLOG = 1000
# The page never sends anything; a small limit keeps a misbehaving client from using memory.
_MAX_INCOMING = 4096
# Close code 1013 (try again later) tells the page to reconnect.
_CLOSE_TOO_SLOW = 1013
# Seconds `start` waits for the loop thread to bind before giving up.
_START_TIMEOUT = 10.0
# Seconds `stop` gives open pages to complete the closing handshake.
_STOP_GRACE = 2.0

# The page is self-contained: inline script and style only, the websocket back to this host.
_PAGE_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    # The token is in the URL: never pass it on in a Referer header.
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
)


@dataclass(frozen=True)
class PromptOptions:
    """Where the prompt server listens, who may connect and what it sends.

    Attributes:
        host: Address to bind. The loopback default keeps the page off the network until a
            deployment asks for it (put TLS in front when it does).
        port: TCP port; 0 picks a free one (tests), read it back from `PromptServer.port`.
        tokens: `(agent_id, token)` pairs from the configuration; an agent's page and
            websocket need its token. An agent without a token gets no messages.
        redact: Replace personal data (phone, ID and card numbers, e-mail, dictated digits) in
            prompts and transcript lines before they leave the process.
        transcript: Send live transcript lines, not only prompts.
        history: Recent messages per agent replayed to a newly connected page, so a reload or
            reconnect mid-call shows the call so far.
        kinds: Event kinds sent as prompts; others stay in the store and the metrics.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    tokens: tuple[tuple[str, str], ...] = ()
    redact: bool = True
    transcript: bool = True
    history: int = 50
    kinds: tuple[EventKind, ...] = DEFAULT_KINDS

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for agent_id, token in self.tokens:
            if not agent_id:
                raise ConfigError("prompts", "an agent id is empty", field="tokens")
            if not token:
                raise ConfigError("prompts", f"agent '{agent_id}' has an empty token",
                                  field="tokens")
            if agent_id in seen:
                raise ConfigError("prompts", f"agent '{agent_id}' is listed twice",
                                  field="tokens")
            seen.add(agent_id)
        if self.history < 0:
            raise ConfigError("prompts", "must be 0 or more", field="history")
        if not 0 <= self.port <= 65535:
            raise ConfigError("prompts", "must be 0-65535", field="port")


class _Connection(ServerConnection):
    """A server connection that stays in `sockets` from accept to close, so `stop` can cut
    the ones still waiting for a request (the library tracks only open websockets)."""

    def __init__(self, *args: Any, sockets: set[ServerConnection], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sockets = sockets
        sockets.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sockets.discard(self)
        super().connection_lost(exc)


def _page_bytes() -> bytes:
    return resources.files("qa.prompts").joinpath("agent.html").read_bytes()


class PromptServer:
    """Serves the agent page and pushes JSON messages to each agent's open pages.

    Args:
        options: Address, tokens and what to send.
    """

    def __init__(self, options: PromptOptions | None = None) -> None:
        self.options = options or PromptOptions()
        self._tokens = {agent: token.encode() for agent, token in self.options.tokens}
        self._page = _page_bytes()
        # Both touched only in the loop thread.
        self._history: dict[str, deque[str]] = {
            agent: deque(maxlen=self.options.history) for agent in self._tokens
        }
        self._clients: dict[str, dict[ServerConnection, asyncio.Queue[str]]] = {
            agent: {} for agent in self._tokens
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task] = set()
        self._sockets: set[ServerConnection] = set()
        self._port = 0
        self._error: OSError | None = None
        self.messages = 0
        self.slow_disconnects = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Binds and starts serving in a background thread.

        Raises:
            PromptServerError: the address cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("prompt server already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="qa-prompts", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT):
            raise PromptServerError(f"prompt server did not start within {_START_TIMEOUT} s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            where = f"{self.options.host}:{self.options.port}"
            raise PromptServerError(
                f"cannot listen on {where}: {self._error.strerror or self._error}"
            ) from self._error
        log.info("agent prompts on http://%s:%d/agent/<agent>", self.options.host, self._port)

    def stop(self) -> None:
        """Closes every connection and stops the server thread; safe to call twice."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> PromptServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one when the options asked for 0)."""
        return self._port

    def page_url(self, agent_id: str, token: str) -> str:
        """The address an agent opens in a browser."""
        host = self.options.host if ":" not in self.options.host else f"[{self.options.host}]"
        return (
            f"http://{host}:{self._port}/agent/{quote(agent_id, safe='')}"
            f"?token={quote(token, safe='')}"
        )

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(self._open())
        except OSError as exc:
            self._error = exc
            loop.close()
            ready.set()
            return
        self._server = server
        self._port = server.sockets[0].getsockname()[1]
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown(server))
            loop.close()

    async def _open(self) -> Server:
        return await serve(
            self._handle,
            self.options.host,
            self.options.port,
            process_request=self._process_request,
            max_size=_MAX_INCOMING,
            # A factory in place of the class (the library calls it like the class).
            create_connection=functools.partial(  # type: ignore[arg-type]
                _Connection, sockets=self._sockets),
        )

    async def _shutdown(self, server: Server) -> None:
        server.close()
        ours = [task for task in self._handlers if not task.done()]
        if ours:
            await asyncio.wait(ours, timeout=_STOP_GRACE)
        # Browsers open spare connections ahead of need that never send a request; the server
        # would wait out their opening timeout (10 s), so they are cut now.
        for connection in list(self._sockets):
            if connection.state is State.CONNECTING:
                connection.transport.abort()
        try:
            await asyncio.wait_for(server.wait_closed(), _STOP_GRACE)
        except TimeoutError:
            log.warning("prompt server stopped with connections still closing")

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, agent_id: str, message: dict) -> bool:
        """Sends a message to every open page of an agent; callable from any thread.

        Args:
            agent_id: The agent whose pages receive it.
            message: A JSON-ready dict (see `qa.prompts.messages`).

        Returns:
            False when nobody can ever see it: the agent has no token, or the server is not
            running.
        """
        loop = self._loop
        if agent_id not in self._history or loop is None or self._thread is None:
            return False
        text = encode(message)
        try:
            loop.call_soon_threadsafe(self._dispatch, agent_id, text)
        except RuntimeError:  # the loop closed between the check and the call: server stopped
            return False
        return True

    def _dispatch(self, agent_id: str, text: str) -> None:
        self.messages += 1
        self._history[agent_id].append(text)
        clients = self._clients[agent_id]
        for connection, queue in list(clients.items()):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                self.slow_disconnects += 1
                log.warning("agent %s: page too slow, %d messages waiting; closing it",
                            agent_id, queue.qsize())
                del clients[connection]
                asyncio.ensure_future(connection.close(_CLOSE_TOO_SLOW, "too slow"))

    # -- HTTP and websocket --------------------------------------------------------------------

    def _authorise(self, target: str) -> tuple[HTTPStatus, str, str]:
        """Checks a request target; returns its status, route (`agent`/`ws`) and agent id."""
        parts = urlsplit(target)
        pieces = parts.path.split("/")
        if len(pieces) != 3 or pieces[0] or pieces[1] not in ("agent", "ws") or not pieces[2]:
            return HTTPStatus.NOT_FOUND, "", ""
        route, agent_id = pieces[1], unquote(pieces[2])
        given = parse_qs(parts.query).get("token", [""])[0]
        if not given:
            return HTTPStatus.UNAUTHORIZED, route, agent_id
        expected = self._tokens.get(agent_id)
        # Compared even for an unknown agent, so timing does not tell which agents exist.
        match = hmac.compare_digest(given.encode(), expected or b"\0")
        if expected is None or not match:
            return HTTPStatus.FORBIDDEN, route, agent_id
        return HTTPStatus.OK, route, agent_id

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        status, route, agent_id = self._authorise(request.path)
        if status != HTTPStatus.OK:
            log.info("refused %s for agent %r: %d", route or "request", agent_id, status)
            return connection.respond(status, f"{status.phrase}\n")
        if route == "ws":
            return None  # go on with the websocket handshake
        headers = Headers(_PAGE_HEADERS)
        headers["Content-Length"] = str(len(self._page))
        return Response(HTTPStatus.OK, "OK", headers, self._page)

    async def _handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None  # the handshake is done
        _, _, agent_id = self._authorise(connection.request.path)
        # The history goes into the queue in the same loop step that registers the queue, so
        # no live message can overtake it or fall between the two.
        queue: asyncio.Queue[str] = asyncio.Queue(self.options.history + _BACKLOG)
        for text in self._history[agent_id]:
            queue.put_nowait(text)
        self._clients[agent_id][connection] = queue
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        log.info("agent %s connected (%d open)", agent_id, len(self._clients[agent_id]))
        pump = asyncio.create_task(self._pump(connection, queue))
        try:
            async for _ in connection:
                pass  # the page sends nothing we act on; reading sees the close
        except ConnectionClosed:
            pass
        finally:
            pump.cancel()
            self._clients[agent_id].pop(connection, None)
            log.info("agent %s disconnected", agent_id)

    @staticmethod
    async def _pump(connection: ServerConnection, queue: asyncio.Queue[str]) -> None:
        try:
            while True:
                await connection.send(await queue.get())
        except ConnectionClosed:
            return
