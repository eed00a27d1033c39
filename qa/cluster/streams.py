"""The JetStream layout shared by capture nodes and workers, and how both connect.

Two streams, both on file storage so a restarted NATS server loses nothing:

- `QA_WORK` on subject `qa.work`: work-queue retention (a message is removed once a worker
  acknowledges it). All workers share one durable pull consumer, `qa-workers`, with explicit
  acknowledgement: a message a worker took and did not acknowledge within `ack_wait` is
  delivered again (to any worker), up to `max_deliver` times.
- `QA_RESULTS` on `qa.results.<node>`: work-queue retention too; each capture node reads its
  own subject through its own durable consumer `results-<node>`.

Both streams deduplicate publishes by the `Nats-Msg-Id` header within `duplicate_window`, so a
publish retried after a lost acknowledgement (a reconnect) is stored once.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from qa.errors import ClusterError, DependencyError

log = logging.getLogger("qa.cluster.streams")

WORK_STREAM = "QA_WORK"
WORK_SUBJECT = "qa.work"
WORK_CONSUMER = "qa-workers"
RESULTS_STREAM = "QA_RESULTS"
RESULTS_PREFIX = "qa.results"

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How the two streams are created (by whichever process comes first).

    Attributes:
        max_age: Seconds a message may wait in either stream. Older work is useless: its
            capture node has counted the utterance as lost long before (see
            `RemoteOptions.result_timeout`).
        duplicate_window: Seconds within which a repeated `Nats-Msg-Id` is dropped by the
            server (covers retries across a server restart of a few seconds).
        max_bytes: Bytes the work stream may hold (5 minutes of speech is 9.6 MB; 1 GiB is
            about 9 hours of speech queued). When full, publishes are refused and the capture
            node retries them: back-pressure, not loss, until its result timeout.
    """

    max_age: float = 600.0
    duplicate_window: float = 120.0
    max_bytes: int = 1 << 30


def results_subject(node: str) -> str:
    """The subject a capture node's results are published on."""
    return f"{RESULTS_PREFIX}.{node_token(node)}"


def node_token(node: str) -> str:
    """`node` made safe as one subject token and consumer name."""
    token = _TOKEN.sub("_", node)
    if not token:
        raise ValueError("node name is empty")
    return token


def probe(url: str, timeout: float) -> None:
    """Waits up to `timeout` seconds for the server's port to accept a connection, so a
    worker fails fast, before loading its model, when the address is wrong.

    Raises:
        ClusterError: nothing accepted a connection there in time.
    """
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 4222)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(address, timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ClusterError(f"cannot connect to NATS at {url} within {timeout:.0f} s "
                                   f"(is nats-server running there?): {exc}") from exc
            time.sleep(0.5)


def nats_module():
    """Imports `nats` (nats-py) lazily, with a message that says what to install."""
    try:
        import nats
        import nats.js.api  # noqa: F401
    except ImportError as exc:
        raise DependencyError("the NATS client is not installed: pip install nats-py") from exc
    return nats


async def connect(url: str, name: str, connect_timeout: float, on_disconnect=None,
                  on_reconnect=None):
    """Connects to NATS, reconnecting for ever after the first connection.

    Args:
        url: The server.
        name: The connection's name (in the server's monitoring and in our logs).
        connect_timeout: Seconds to wait for the first connection.
        on_disconnect: Called on each disconnection; returns False to keep it out of the
            log (a disconnection that closing causes).
        on_reconnect: Called on each reconnection.

    Raises:
        ClusterError: the server cannot be reached within `connect_timeout`.
    """
    nats = nats_module()

    async def disconnected() -> None:
        # `on_disconnect` returns False when the disconnection is our own close.
        if on_disconnect is None or on_disconnect():
            log.warning("%s: disconnected from NATS %s; reconnecting", name, url)

    async def reconnected() -> None:
        log.warning("%s: reconnected to NATS %s", name, url)
        if on_reconnect:
            on_reconnect()

    async def error(exc: Exception) -> None:
        log.debug("%s: NATS client error: %r", name, exc)

    wait = 0.5  # seconds between connection attempts
    try:
        # nats-py applies `max_reconnect_attempts` to the first connection too, where -1
        # would retry for ever: bound the first, then reconnect without limit.
        client = await nats.connect(
            url, name=name, connect_timeout=max(1, int(connect_timeout)),
            allow_reconnect=True, max_reconnect_attempts=max(1, int(connect_timeout / wait)),
            reconnect_time_wait=wait, disconnected_cb=disconnected, reconnected_cb=reconnected,
            error_cb=error,
        )
    except Exception as exc:  # nats-py raises several unrelated types for "no server"
        raise ClusterError(f"cannot connect to NATS at {url} within {connect_timeout:.0f} s "
                           f"(is nats-server running there, with -js?): {exc!r}") from exc
    client.options["max_reconnect_attempts"] = -1
    return client


async def ensure_streams(js, options: StreamOptions) -> None:
    """Creates both streams, or updates them to `options` when they exist."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

    for name, subjects, max_bytes in ((WORK_STREAM, [WORK_SUBJECT], options.max_bytes),
                                      (RESULTS_STREAM, [f"{RESULTS_PREFIX}.>"], -1)):
        config = StreamConfig(
            name=name, subjects=subjects, retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, max_age=options.max_age, max_bytes=max_bytes,
            discard=DiscardPolicy.NEW, duplicate_window=options.duplicate_window,
        )
        try:
            await js.add_stream(config)
        except Exception as exc:  # exists with another config: bring it to ours
            try:
                await js.update_stream(config)
            except Exception as again:
                raise ClusterError(f"cannot create JetStream stream {name}: {exc!r}; "
                                   f"update: {again!r}") from again
