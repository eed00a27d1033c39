"""A recognition worker (`qa worker --nats URL`): pulls utterances from NATS in batches,
transcribes them, publishes their segments and only then acknowledges them.

The guarantees rest on that order. A worker that dies at any point before acknowledging
(SIGKILL mid-batch, a lost machine) leaves its messages unacknowledged; the server delivers
them again after `ack_wait`, to any worker, and the capture node keeps the first result per
utterance id and drops the rest, so each utterance is transcribed exactly once in effect.
While a batch decodes, the worker tells the server it is still working on it (`in_progress`,
every third of `ack_wait`), so a long decode is not redelivered under it, but a dead worker's
batch comes back within `ack_wait`.

A stop (SIGTERM) takes no more messages, lets the running batch finish, publish and
acknowledge for up to `drain_timeout` seconds, and otherwise gives its messages back at once
(`nak`) so another worker takes them without waiting for `ack_wait`.

Decoding goes through `qa.pipeline.run_batch`, the local pipeline's own batched path, with
the language each capture node sent; a message that cannot be parsed is logged, counted and
terminated (never redelivered); a batch that fails falls back to one utterance at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from qa.cluster.streams import (
    RESULTS_PREFIX,
    WORK_CONSUMER,
    WORK_STREAM,
    WORK_SUBJECT,
    StreamOptions,
    connect,
    ensure_streams,
)
from qa.cluster.wire import Result, Work, decode_work, encode_result
from qa.errors import ClusterError, WireFormatError
from qa.pipeline import run_batch
from qa.types import TranscribeBatchFn, TranscribeFn

log = logging.getLogger("qa.cluster.worker")


def default_worker_name() -> str:
    """Host name and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker takes work.

    Attributes:
        url: The NATS server (`nats://HOST:4222`).
        batch: Utterances taken and decoded together (8 measured best on 2 CPU cores,
            docs/capacity.md; a GPU takes more).
        fetch_wait: Seconds a fetch waits for the batch to fill before decoding what came
            (0.1 s, as the local pipeline's `batch_wait_ms`).
        ack_wait: Seconds the server waits for an acknowledgement before delivering a message
            again. The shared consumer takes the value of the first worker that creates it;
            a later worker with another value updates it.
        max_deliver: Deliveries of one utterance before the server gives up on it (a message
            that kills every worker that decodes it must not go round for ever). The capture
            node then counts it lost at its result timeout.
        max_ack_pending: Messages taken and not yet acknowledged, over all workers.
        drain_timeout: Seconds a stop lets the running batch finish (the process must end
            within 5 s of SIGTERM).
        max_decode: Seconds a batch may keep its messages with `in_progress`; past it they
            are left to redeliver (a decode that hangs must not hold them for ever).
        name: This worker's name in results and logs.
        streams: How the streams are created when this worker is the first to start.
    """

    url: str
    batch: int = 8
    fetch_wait: float = 0.1
    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1024
    drain_timeout: float = 3.5
    max_decode: float = 300.0
    name: str = field(default_factory=default_worker_name)
    streams: StreamOptions = field(default_factory=StreamOptions)


@dataclass(slots=True)
class WorkerStats:
    """What a worker did (also in its log at the end)."""

    batches: int = 0
    utterances: int = 0
    redelivered: int = 0
    bad_messages: int = 0
    publish_retries: int = 0
    given_back: int = 0
    decode_seconds: float = 0.0
    audio_seconds: float = 0.0


class Worker:
    """Takes work from the shared consumer until stopped (see the module docstring).

    Args:
        options: Where the server is and how work is taken.
        transcribe: One utterance to its segments (a loaded model's `BatchTranscriber`).
        transcribe_batch: Several utterances decoded together.
    """

    def __init__(self, options: WorkerOptions, transcribe: TranscribeFn,
                 transcribe_batch: TranscribeBatchFn | None = None) -> None:
        self.options = options
        self._transcribe = transcribe
        self._transcribe_batch = transcribe_batch
        self.stats = WorkerStats()
        #: False when a decode was still running when the worker stopped (the caller must
        #: then not free the model under it: exit the process with `os._exit`).
        self.stopped_cleanly = True
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="qa-worker-decode")

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> WorkerStats:
        """Works until `stop` is set; `ready` is set once connected and subscribed.

        Raises:
            ClusterError: the server cannot be reached at start or refused the setup.
        """
        try:
            asyncio.run(self._main(stop, ready))
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
        s = self.stats
        log.info("worker %s stopped: %d batches, %d utterances (%d redelivered), %d bad "
                 "messages, %d given back, %.1f s decoding %.1f s of audio",
                 self.options.name, s.batches, s.utterances, s.redelivered, s.bad_messages,
                 s.given_back, s.decode_seconds, s.audio_seconds)
        return s

    async def _main(self, stop: threading.Event, ready: threading.Event | None) -> None:
        import nats.errors

        opts = self.options
        nc = await connect(opts.url, f"qa-worker {opts.name}", 10.0,
                           on_disconnect=lambda: not stop.is_set())
        try:
            js = nc.jetstream()
            await ensure_streams(js, opts.streams)
            subscription = await self._subscribe(js)
            if ready is not None:
                ready.set()
            log.info("worker %s taking work from %s (batch %d)", opts.name, opts.url,
                     opts.batch)
            failures = 0
            next_check = time.monotonic() + 5.0
            while not stop.is_set():
                if time.monotonic() >= next_check:
                    # A fetch from a missing consumer only times out, like an idle one: a
                    # server that came back without its store needs the consumer again.
                    next_check = time.monotonic() + 5.0
                    subscription = await self._check(js, subscription)
                try:
                    messages = await subscription.fetch(opts.batch, timeout=opts.fetch_wait)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except Exception as exc:  # a reconnect in progress
                    failures += 1
                    if failures & (failures - 1) == 0:
                        log.warning("taking work failed (%d times): %r", failures, exc)
                    await asyncio.sleep(0.2)
                    continue
                await self._process(js, messages, stop)
        finally:
            try:
                await asyncio.wait_for(nc.close(), 1.0)
            except Exception as exc:
                log.debug("closing the NATS connection: %r", exc)

    async def _check(self, js, subscription):
        from nats.js.errors import NotFoundError

        try:
            await js.consumer_info(WORK_STREAM, WORK_CONSUMER)
            return subscription
        except NotFoundError:
            log.warning("NATS: the work consumer is missing; creating the streams and "
                        "consumer again")
        except Exception as exc:  # a reconnect in progress
            log.debug("checking the work consumer: %r", exc)
            return subscription
        try:
            await ensure_streams(js, self.options.streams)
            return await self._subscribe(js)
        except Exception as exc:
            log.warning("re-creating the streams failed: %r", exc)
            return subscription

    async def _subscribe(self, js):
        from nats.js.api import AckPolicy, ConsumerConfig

        opts = self.options
        config = ConsumerConfig(
            durable_name=WORK_CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=opts.ack_wait,
            max_deliver=opts.max_deliver, max_ack_pending=opts.max_ack_pending,
            filter_subject=WORK_SUBJECT, max_waiting=512,
        )
        try:
            info = await js.consumer_info(WORK_STREAM, WORK_CONSUMER)
        except Exception:
            info = None
        if info is not None and (info.config.ack_wait != opts.ack_wait
                                 or info.config.max_deliver != opts.max_deliver):
            try:
                await js.add_consumer(WORK_STREAM, config)
            except Exception as exc:
                log.warning("the shared consumer keeps ack_wait %.1f s, max_deliver %s (%r)",
                            info.config.ack_wait, info.config.max_deliver, exc)
        try:
            return await js.pull_subscribe(WORK_SUBJECT, durable=WORK_CONSUMER,
                                           stream=WORK_STREAM, config=config)
        except Exception as exc:
            raise ClusterError(f"cannot subscribe to {WORK_STREAM}: {exc!r}") from exc

    async def _process(self, js, messages: Sequence, stop: threading.Event) -> None:
        work: list[tuple[object, Work]] = []
        for message in messages:
            try:
                item = decode_work(message.data)
                if not item.reply_to.startswith(RESULTS_PREFIX + "."):
                    # Outside the results stream a publish is never stored: it would be
                    # retried for ever.
                    raise WireFormatError("work message", f"not a results subject: "
                                          f"{item.reply_to!r}", field="reply")
            except WireFormatError as exc:
                self.stats.bad_messages += 1
                log.error("dropped a malformed work message (not redelivered): %s", exc)
                await _quietly(message.term())
                continue
            deliveries = message.metadata.num_delivered
            if deliveries > 1:
                self.stats.redelivered += 1
                log.info("utterance %s delivered again (delivery %d)", item.utterance_id,
                         deliveries)
            work.append((message, item))
        # One decode per language: a batch decodes in one language (capture nodes may differ).
        by_language: dict[str | None, list[tuple[object, Work]]] = {}
        for message, item in work:
            by_language.setdefault(item.language, []).append((message, item))
        for language, group in by_language.items():
            if not await self._decode_and_answer(js, group, language, stop):
                return

    async def _decode_and_answer(self, js, group, language, stop: threading.Event) -> bool:
        opts = self.options
        utterances = [item.utterance for _, item in group]
        log.info("decoding a batch of %d utterances (%.1f s of audio)", len(utterances),
                 sum(u.duration for u in utterances))
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        decode = loop.run_in_executor(
            self._executor, run_batch, self._transcribe, self._transcribe_batch, utterances,
            language)
        give_up = began + opts.max_decode
        next_progress = began + opts.ack_wait / 3
        drain_until = None
        while not decode.done():
            await asyncio.wait({decode}, timeout=0.1)
            now = time.monotonic()
            if stop.is_set() and drain_until is None:
                drain_until = now + opts.drain_timeout
            if (drain_until is not None and now >= drain_until) or now >= give_up:
                await self._give_back(group, "the stop's drain time ran out" if drain_until
                                      else f"the decode ran past {opts.max_decode:.0f} s")
                self.stopped_cleanly = False
                stop.set()
                return False
            if now >= next_progress:
                next_progress = now + opts.ack_wait / 3
                for message, _ in group:
                    await _quietly(message.in_progress())
        try:
            results = decode.result()
        except Exception as exc:  # run_batch isolates decode errors; this is a bug
            log.exception("batch failed")
            results = [[] for _ in group]
            error = repr(exc)
        else:
            error = ""
        took = time.monotonic() - began
        self.stats.batches += 1
        self.stats.utterances += len(group)
        self.stats.decode_seconds += took
        self.stats.audio_seconds += sum(u.duration for u in utterances)
        for (message, item), segments in zip(group, results, strict=True):
            result = Result(item.utterance_id, tuple(segments), error, opts.name, took)
            if not await self._publish(js, item, encode_result(result), stop, drain_until):
                await self._give_back([(message, item)], "its result could not be published")
                return False
            try:
                await message.ack_sync(timeout=2.0)
            except Exception as exc:  # redelivered after ack_wait; the duplicate is dropped
                log.warning("acknowledging utterance %s failed: %r (it will be delivered "
                            "again and its second result dropped)", item.utterance_id, exc)
        return True

    async def _publish(self, js, item: Work, payload: bytes, stop: threading.Event,
                       drain_until: float | None) -> bool:
        """Publishes a result until the server has it (the same id dedupes retries)."""
        attempt = 0
        while True:
            try:
                await js.publish(item.reply_to, payload, timeout=2.0,
                                 headers={"Nats-Msg-Id": f"r-{item.utterance_id}"})
                return True
            except Exception as exc:  # server down or restarting: retry
                attempt += 1
                self.stats.publish_retries += 1
                if attempt & (attempt - 1) == 0:
                    log.warning("publishing the result of %s failed (%d times): %r",
                                item.utterance_id, attempt, exc)
                if attempt % 20 == 0:  # ~15 s of refusals: the results stream may be gone
                    try:
                        await ensure_streams(js, self.options.streams)
                    except Exception as again:
                        log.warning("re-creating the streams failed: %r", again)
            if stop.is_set():
                drain_until = drain_until or time.monotonic() + self.options.drain_timeout
                if time.monotonic() >= drain_until:
                    return False
            await asyncio.sleep(min(1.0, 0.05 * attempt))

    async def _give_back(self, group, why: str) -> None:
        log.warning("giving back %d utterances for another worker: %s", len(group), why)
        self.stats.given_back += len(group)
        for message, _ in group:
            await _quietly(message.nak())


async def _quietly(coroutine) -> None:
    try:
        await asyncio.wait_for(coroutine, 1.0)
    except Exception as exc:  # the server redelivers after ack_wait anyway
        log.debug("NATS acknowledgement call failed: %r", exc)
