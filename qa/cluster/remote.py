"""The capture node's side of remote recognition: utterances out to NATS, segments back.

`RemoteTranscriber` is the pipeline's remote transcription backend (`Pipeline(submit=...)`).
For each utterance it makes an id (UUIDv7), publishes the utterance to the work stream with
that id as `Nats-Msg-Id`, and keeps it pending until a result with the same id comes back on
this node's results subject. Then:

- **Deduplication.** The first result for an id completes the utterance; any later one (a
  worker killed after publishing but before acknowledging, whose work was redelivered and
  transcribed again) is counted and dropped. Each utterance is transcribed exactly once in
  effect.
- **Order.** Results arrive in any order (several workers, redeliveries). The pipeline's
  per-channel reorder buffer (keyed by the utterance's index on its channel) hands the
  segments to the rules and listeners in the order spoken, as for local recognition.
- **Loss is never silent.** An utterance without a result `result_timeout` seconds after it
  was handed over is counted as lost, logged with its call, channel and times, and completed
  with no segments, so its call goes on and ends instead of waiting for ever.
- **Back-pressure.** At most `max_in_flight` utterances are outstanding; past that `submit`
  blocks the pipeline's worker thread, the pipeline's own bounded queue fills, and its drop
  policy (counted, per call) applies. The wait is counted in `backpressure_seconds`.
- **Reconnects.** The client reconnects for ever; a publish that fails (server down, no
  acknowledgement) is retried with the same id, so a retry that did reach the server is
  dropped by it as a duplicate.

All NATS work runs on one asyncio loop in a background thread; `submit` and `close` are
called from other threads. Completion callbacks run on that loop's thread and must be quick
(the pipeline's only posts a task to its dispatcher).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qa.cluster.streams import (
    RESULTS_STREAM,
    WORK_CONSUMER,
    WORK_STREAM,
    WORK_SUBJECT,
    StreamOptions,
    connect,
    ensure_streams,
    node_token,
    results_subject,
)
from qa.cluster.wire import decode_result, encode_work
from qa.errors import ClusterError, WireFormatError
from qa.ids import time_uuid
from qa.types import Segment, Utterance

log = logging.getLogger("qa.cluster.remote")

#: Called once per utterance with its segments, or None when it was lost.
DoneFn = Callable[["list[Segment] | None"], None]


def default_node() -> str:
    """This capture node's name: host name and process id (unique per running `qa run`)."""
    return node_token(f"{socket.gethostname()}-{os.getpid()}")


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    """How a capture node uses remote recognition workers.

    Attributes:
        url: The NATS server (`nats://HOST:4222`).
        node: This capture node's name; its results subject and consumer are named after it.
        max_in_flight: Utterances published and not yet answered before `submit` blocks.
            256 is about 20 minutes of speech queued at 5 s per utterance.
        result_timeout: Seconds from hand-over to result after which an utterance is lost.
            Long enough for a worker's death (`ack_wait`), a redelivery and a server restart.
        connect_timeout: Seconds to reach the server at start.
        publish_timeout: Seconds to wait for the server's acknowledgement of a publish.
        stats_interval: Seconds between reads of the work queue's depth from the server.
        streams: How the streams are created when this node is the first to start.
    """

    url: str
    node: str = field(default_factory=default_node)
    max_in_flight: int = 256
    result_timeout: float = 120.0
    connect_timeout: float = 10.0
    publish_timeout: float = 2.0
    stats_interval: float = 2.0
    streams: StreamOptions = field(default_factory=StreamOptions)


@dataclass(slots=True)
class _Pending:
    utterance: Utterance
    done: DoneFn
    handed_at: float
    deadline: float


class RemoteTranscriber:
    """The remote transcription backend of one capture node (see the module docstring).

    Args:
        options: Where the server is and how this node uses it.
        observe_round_trip: Called with the seconds from publish to result of each utterance
            (the metrics' histogram), on the NATS thread.
        observe_decode: Called with the seconds the worker spent decoding the batch that held
            each utterance (from its result), on the NATS thread.
    """

    def __init__(self, options: RemoteOptions,
                 observe_round_trip: Callable[[float], None] | None = None,
                 observe_decode: Callable[[float], None] | None = None) -> None:
        self.options = options
        self._observe = observe_round_trip
        self._observe_decode = observe_decode
        self._subject = results_subject(options.node)
        self._consumer = f"results-{node_token(options.node)}"
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, options.max_in_flight))
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qa-nats",
                                        daemon=True)
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()  # replaced in _setup
        self._tasks: list[asyncio.Task] = []
        self._nc: Any = None  # nats.aio.client.Client once connected
        self._js: Any = None  # its JetStream context
        self._results: Any = None  # the pull subscription to this node's results
        # Counts read by the metrics collector at scrape time (see `stats`).
        self.published = 0
        self.results = 0
        self.duplicate_results = 0
        self.duplicate_publishes = 0
        self.lost = 0
        self.publish_retries = 0
        self.bad_results = 0
        self.worker_errors = 0
        self.disconnects = 0
        self.backpressure_seconds = 0.0
        self.queue_depth = 0
        self.redelivering = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> RemoteTranscriber:
        """Connects, creates the streams and this node's results consumer, and starts
        reading results.

        Raises:
            ClusterError: the server cannot be reached or refused the setup.
        """
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._setup(), self._loop)
        try:
            future.result(self.options.connect_timeout + 10)
        except Exception as exc:
            self._stop_loop()
            if isinstance(exc, ClusterError):
                raise
            raise ClusterError(f"NATS setup at {self.options.url} failed: {exc!r}") from exc
        log.info("remote recognition through %s as node %s", self.options.url,
                 self.options.node)
        return self

    async def _setup(self) -> None:
        self._nc = await connect(self.options.url, f"qa-run {self.options.node}",
                                 self.options.connect_timeout, on_disconnect=self._disconnected)
        self._js = self._nc.jetstream()
        await self._subscribe()
        self._outbox = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(coro) for coro in
                       (self._publisher(), self._receiver(), self._sweeper(), self._watch())]

    async def _subscribe(self) -> None:
        """Creates the streams (when missing) and this node's results consumer."""
        from nats.js.api import AckPolicy, ConsumerConfig

        await ensure_streams(self._js, self.options.streams)
        self._results = await self._js.pull_subscribe(
            self._subject, durable=self._consumer, stream=RESULTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30.0,
                                  max_deliver=-1, inactive_threshold=3600.0))

    async def _recover(self, why: str) -> None:
        """Re-creates the streams and the consumer: the server came back without them (its
        store was lost or it is a new server). Work it lost is counted at its timeout."""
        log.warning("NATS: %s; creating the streams and consumer again", why)
        try:
            await self._subscribe()
        except Exception as exc:  # still down: the next failure tries again
            log.warning("re-creating the streams failed: %r", exc)

    def _disconnected(self) -> bool:
        if self._closing:
            return False
        self.disconnects += 1
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stops reading and publishing, removes this node's results consumer and
        disconnects. Utterances still pending are left to time out on the workers' side
        (their results expire from the results stream)."""
        if self._closing or not self._thread.is_alive():
            return
        self._closing = True
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout)
        except Exception as exc:  # closing must not fail the caller
            log.warning("closing the NATS connection: %r", exc)
        self._stop_loop()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._nc is None:
            return
        try:
            if not self._pending:  # nothing more will come for this node
                await self._js.delete_consumer(RESULTS_STREAM, self._consumer)
        except Exception as exc:
            log.debug("deleting consumer %s: %r", self._consumer, exc)
        await self._nc.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)

    def __enter__(self) -> RemoteTranscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline's side ----------------------------------------------------------------

    def submit(self, utterance: Utterance, language: str | None, done: DoneFn) -> None:
        """Hands one utterance to the workers; `done` is called once with its segments, or
        None when it was lost. Blocks while `max_in_flight` utterances are outstanding."""
        began = time.monotonic()
        while not self._slots.acquire(timeout=0.5):
            if self._closing:
                done(None)
                return
        waited = time.monotonic() - began
        if waited > 0.01:
            self.backpressure_seconds += waited
        if self._closing:
            self._slots.release()
            done(None)
            return
        utterance_id = str(time_uuid())
        now = time.monotonic()
        with self._lock:
            self._pending[utterance_id] = _Pending(utterance, done, now,
                                                   now + self.options.result_timeout)
        payload = encode_work(utterance_id, utterance, language, self._subject)
        self._loop.call_soon_threadsafe(self._outbox.put_nowait, (utterance_id, payload))

    def _complete(self, utterance_id: str) -> _Pending | None:
        with self._lock:
            entry = self._pending.pop(utterance_id, None)
        if entry is not None:
            self._slots.release()
        return entry

    @property
    def in_flight(self) -> int:
        """Utterances handed over and not yet answered (or lost)."""
        return len(self._pending)

    def stats(self) -> dict[str, float]:
        """Counts for the metrics (read at scrape time)."""
        return {
            "in_flight": self.in_flight, "queue_depth": self.queue_depth,
            "redelivering": self.redelivering, "published": self.published,
            "results": self.results, "duplicate_results": self.duplicate_results,
            "lost": self.lost, "publish_retries": self.publish_retries,
            "bad_results": self.bad_results, "worker_errors": self.worker_errors,
            "disconnects": self.disconnects, "backpressure_seconds": self.backpressure_seconds,
        }

    # -- the NATS thread --------------------------------------------------------------------

    async def _publisher(self) -> None:
        """Publishes work in hand-over order, retrying each until the server has it."""
        while True:
            utterance_id, payload = await self._outbox.get()
            attempt = 0
            while utterance_id in self._pending:
                try:
                    ack = await self._js.publish(
                        WORK_SUBJECT, payload, timeout=self.options.publish_timeout,
                        stream=WORK_STREAM, headers={"Nats-Msg-Id": utterance_id})
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    attempt += 1
                    self.publish_retries += 1
                    if attempt & (attempt - 1) == 0:  # 1, 2, 4, 8...: a count, not a flood
                        log.warning("publishing utterance %s failed (%d times): %r; retrying",
                                    utterance_id, attempt, exc)
                    if attempt % 20 == 0:  # ~15 s of refusals: the stream may be gone
                        await self._recover(f"publishing failed {attempt} times")
                    await asyncio.sleep(min(1.0, 0.05 * attempt))
                    continue
                self.published += 1
                if ack.duplicate:
                    self.duplicate_publishes += 1
                break

    async def _receiver(self) -> None:
        """Takes this node's results, completing each utterance once."""
        import nats.errors

        failures = 0
        while True:
            try:
                messages = await self._results.fetch(1, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:  # a reconnect in progress
                failures += 1
                if failures & (failures - 1) == 0:
                    log.warning("reading results failed (%d times): %r", failures, exc)
                await asyncio.sleep(0.2)
                continue
            for message in messages:
                self._on_result(message.data)
                try:
                    await message.ack()
                except Exception as exc:  # redelivered later and then dropped as a duplicate
                    log.debug("acknowledging a result: %r", exc)

    def _on_result(self, data: bytes) -> None:
        try:
            result = decode_result(data)
        except WireFormatError as exc:
            self.bad_results += 1
            log.error("dropped a malformed result on %s: %s", self._subject, exc)
            return
        entry = self._complete(result.utterance_id)
        if entry is None:
            self.duplicate_results += 1
            log.info("dropped a second result for utterance %s (from %s): already done or "
                     "counted lost", result.utterance_id, result.worker or "?")
            return
        self.results += 1
        if result.error:
            self.worker_errors += 1
            log.warning("worker %s could not transcribe utterance %d of call %s (%s): %s",
                        result.worker, entry.utterance.index, entry.utterance.call_id,
                        entry.utterance.speaker, result.error)
        if self._observe is not None:
            self._observe(time.monotonic() - entry.handed_at)
        if self._observe_decode is not None and result.decode_seconds > 0:
            self._observe_decode(result.decode_seconds)
        entry.done(list(result.segments))

    async def _sweeper(self) -> None:
        """Completes utterances whose result never came, counted and logged."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                expired = [key for key, entry in self._pending.items() if entry.deadline <= now]
            for key in expired:
                entry = self._complete(key)
                if entry is None:
                    continue
                self.lost += 1
                u = entry.utterance
                log.warning("utterance %d of call %s (%s, %.2f-%.2f s) lost: no result within "
                            "%.0f s (no worker, or every delivery failed); counted as dropped",
                            u.index, u.call_id, u.speaker, u.start, u.end,
                            self.options.result_timeout)
                entry.done(None)

    async def _watch(self) -> None:
        """Reads the work queue's depth and redeliveries from the server for the metrics,
        and checks that this node's results consumer still exists (a fetch from a missing
        consumer only times out, like an idle one)."""
        from nats.js.errors import NotFoundError

        while True:
            try:
                await self._js.consumer_info(RESULTS_STREAM, self._consumer)
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                await self._recover(f"consumer {self._consumer} is missing")
            except Exception as exc:  # a reconnect in progress
                log.debug("checking the results consumer: %r", exc)
            try:
                info = await self._js.stream_info(WORK_STREAM)
                self.queue_depth = info.state.messages
                consumer = await self._js.consumer_info(WORK_STREAM, WORK_CONSUMER)
                self.redelivering = consumer.num_redelivered or 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no worker has made the consumer yet, or a reconnect
                log.debug("reading queue depth: %r", exc)
            await asyncio.sleep(self.options.stats_interval)
