"""Serves a registry's `/metrics` over HTTP (text or OpenMetrics), in a daemon thread."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("qa.metrics")


class MetricsServer:
    """Serves a registry's `/metrics` over HTTP (OpenMetrics when the scraper asks for it).

    Args:
        registry: The registry to expose.
        host: Address to listen on (loopback by default: metrics name agents).
        port: TCP port; 0 picks a free one (see `port` after `start`).
    """

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
                 ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Starts serving in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server, self._thread = start_http_server(self.port, self.host, self.registry)
        self._server = server
        self.port = server.server_address[1]
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)
        return self

    @property
    def url(self) -> str:
        """The `/metrics` address."""
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_metrics_server(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9464
) -> MetricsServer:
    """Starts a `MetricsServer`; call `stop()` on the result to end it."""
    return MetricsServer(registry, host, port).start()
