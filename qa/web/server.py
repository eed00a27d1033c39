"""Runs the workspace: one aiohttp server on the loopback (or where told), HTTPS with a cert."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import threading
from collections.abc import Callable

from aiohttp import web

from qa.db import mask_url
from qa.errors import WorkspaceError
from qa.store import CallStore, StoreOptions
from qa.types import CallInfo, CallSummary, Event, PipelineListener, Segment
from qa.web.app import build_app
from qa.web.live import LIVE, LiveFeed
from qa.web.options import WebOptions

__all__ = ["WorkspaceThread", "serve", "tls_context"]

log = logging.getLogger("qa.web.server")
#: Seconds the server waits for open requests when it stops.
_SHUTDOWN_S = 3.0


def tls_context(options: WebOptions) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 or later), or None without a certificate.

    Raises:
        WorkspaceError: A key without a certificate (or the reverse), or files that do not load.
    """
    if options.tls_cert is None and options.tls_key is None:
        return None
    if options.tls_cert is None or options.tls_key is None:
        raise WorkspaceError("TLS needs both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.tls_cert, options.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise WorkspaceError(f"{options.tls_cert}: cannot load the certificate and key: "
                             f"{exc}") from exc
    return context


async def _start(options: WebOptions) -> tuple[web.AppRunner, CallStore, str]:
    context = tls_context(options)
    store = CallStore(StoreOptions(path=options.db))
    try:
        # The live streams end on shutdown; the timeout bounds a handler that would not.
        runner = web.AppRunner(build_app(options, store), access_log=None,
                               shutdown_timeout=_SHUTDOWN_S)
        await runner.setup()
        site = web.TCPSite(runner, options.host, options.port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise WorkspaceError(f"cannot listen on {options.host}:{options.port}: "
                                 f"{exc.strerror}") from exc
    except BaseException:
        store.close()
        raise
    host, port = runner.addresses[0][:2]
    scheme = "https" if context else "http"
    url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}/"
    log.info("review workspace on %s (database %s)", url, mask_url(str(options.db)))
    return runner, store, url


async def _run(options: WebOptions, ready: Callable[[str], None]) -> None:
    runner, store, url = await _start(options)
    try:
        ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
    finally:
        store.close()


class WorkspaceThread:
    """The workspace served from a thread of another process (`qa run --serve-port`), on an
    event loop of its own; `listener` wakes its live streams after each pipeline write, so
    they push without waiting for the next poll of the store.

    Args:
        options: Where to listen and which store to serve (the one the pipeline writes).
    """

    def __init__(self, options: WebOptions) -> None:
        self.options = options
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qa-workspace",
                                        daemon=True)
        self._runner: web.AppRunner | None = None
        self._store: CallStore | None = None

    def start(self) -> str:
        """Starts serving; returns the URL.

        Raises:
            WorkspaceError: The address cannot be bound or the TLS files do not load.
        """
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(_start(self.options), self._loop)
        try:
            self._runner, self._store, self.url = started.result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            raise
        return self.url

    @property
    def listener(self) -> PipelineListener:
        """A pipeline listener (after the store's) that wakes the live streams."""
        assert self._runner is not None, "start() first"
        return _Waker(self._runner.app[LIVE])

    def stop(self) -> None:
        """Ends every stream and stops serving (within a few seconds)."""
        if self._runner is not None:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            done.result(_SHUTDOWN_S + 5.0)
            self._runner = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


class _Waker(PipelineListener):
    def __init__(self, feed: LiveFeed) -> None:
        self.feed = feed

    def call_started(self, call: CallInfo) -> None:
        self.feed.wake()

    def segment(self, segment: Segment, latency: float) -> None:
        self.feed.wake()

    def event(self, event: Event) -> None:
        self.feed.wake()

    def call_ended(self, summary: CallSummary) -> None:
        self.feed.wake()


def serve(options: WebOptions, ready: Callable[[str], None] = lambda url: None) -> None:
    """Serves the workspace until SIGINT or SIGTERM.

    Args:
        options: Where to listen and which store to serve.
        ready: Called with the server's URL once it listens (port 0 picks a free one).

    Raises:
        WorkspaceError: The address cannot be bound or the TLS files do not load.
        StoreError: The store cannot be opened.
    """
    asyncio.run(_run(options, ready))
