"""Runs the workspace: one aiohttp server on the loopback (or where told), HTTPS with a cert."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from qa.db import mask_url
from qa.errors import WorkspaceError
from qa.store import CallStore, StoreOptions
from qa.web.app import build_app
from qa.web.options import WebOptions

__all__ = ["serve", "tls_context"]

log = logging.getLogger("qa.web.server")


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


async def _run(options: WebOptions, ready: Callable[[str], None]) -> None:
    context = tls_context(options)
    store = CallStore(StoreOptions(path=options.db))
    try:
        runner = web.AppRunner(build_app(options, store), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, options.host, options.port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise WorkspaceError(f"cannot listen on {options.host}:{options.port}: "
                                 f"{exc.strerror}") from exc
        host, port = runner.addresses[0][:2]
        scheme = "https" if context else "http"
        url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}/"
        log.info("review workspace on %s (database %s)", url, mask_url(str(options.db)))
        ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
    finally:
        store.close()


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
