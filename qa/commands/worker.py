"""`qa worker --nats nats://HOST:4222`: a recognition worker for capture nodes that run
`qa run --asr nats://HOST:4222` (docs/scaling.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from qa.models import DEFAULT_MODEL

log = logging.getLogger("qa.commands.worker")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker",
        help="transcribe utterances for capture nodes, through NATS JetStream",
        description="Load the model once, then take utterances from the NATS work stream in "
        "batches, transcribe them and publish their segments to the capture node that sent "
        "them, acknowledging each only after its segments are published. Runs until SIGTERM "
        "or Ctrl-C (the running batch finishes within 5 s or is given back to other workers).",
    )
    parser.add_argument("--nats", required=True, metavar="URL", help="nats://HOST:4222")
    parser.add_argument("--batch", type=int, default=None,
                        help="utterances decoded together, from any calls and capture nodes "
                        "(default 8 on cpu, 32 on cuda)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="installed model name or model directory")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--compute-type", default=None,
                        help="CTranslate2 compute type (default: int8 on cpu, float16 on cuda)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per decode")
    parser.add_argument("--ack-wait", type=float, default=30.0,
                        help="seconds before a dead worker's utterances go to another worker")
    parser.add_argument("--max-deliver", type=int, default=5,
                        help="deliveries of one utterance before it is given up")
    parser.set_defaults(func=run)


#: Utterances per decode by device. 8 measured best on 2 CPU cores (docs/capacity.md); a GPU
#: is far from full at 8 with `base`, and 32 fills in about 0.4 s at 350 calls
#: (docs/scaling.md, "GPU workers").
DEFAULT_BATCH = {"cpu": 8, "cuda": 32}
#: CTranslate2 compute type by device: int8 is the fast CPU choice; GPUs run float16.
DEFAULT_COMPUTE = {"cpu": "int8", "cuda": "float16"}


def options(args: argparse.Namespace):
    """The worker's and the model's options from the command line.

    Returns:
        `(WorkerOptions, TranscriberOptions)`.

    Raises:
        ConfigError: a bad URL or batch size.
    """
    from qa.asr import TranscriberOptions
    from qa.cluster.worker import WorkerOptions
    from qa.errors import ConfigError

    if not args.nats.startswith(("nats://", "tls://")):
        raise ConfigError("command line", f"not a NATS URL: {args.nats!r}", field="nats")
    batch = DEFAULT_BATCH[args.device] if args.batch is None else args.batch
    if batch < 1:
        raise ConfigError("command line", "must be at least 1", field="batch")
    transcriber = TranscriberOptions(
        model=args.model, device=args.device,
        compute_type=args.compute_type or DEFAULT_COMPUTE[args.device],
        cpu_threads=args.threads)
    worker = WorkerOptions(url=args.nats, batch=batch, ack_wait=args.ack_wait,
                           max_deliver=args.max_deliver)
    return worker, transcriber


def run(args: argparse.Namespace) -> int:
    from qa.asr import Transcriber
    from qa.batching import BatchTranscriber
    from qa.cluster.streams import probe
    from qa.cluster.worker import Worker

    worker_options, transcriber_options = options(args)
    probe(args.nats, 10.0)  # before the model loads (seconds), so a wrong address fails fast
    # One model and one batched decoder for every call and capture node: on a GPU the
    # batch is what fills it.
    batcher = BatchTranscriber(Transcriber(transcriber_options))
    worker = Worker(worker_options, batcher.transcribe, batcher.transcribe_batch)
    stop = threading.Event()
    ready = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        log.warning("%s: stopping (again to exit at once)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    threading.Thread(target=_say_ready, args=(ready, stop, args.nats), daemon=True).start()
    worker.run(stop, ready)
    if not worker.stopped_cleanly:
        # A decode still runs; freeing the model under it at exit would crash the process.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    return 0


def _say_ready(ready: threading.Event, stop: threading.Event, url: str) -> None:
    while not stop.is_set():
        if ready.wait(0.2):
            print(f"# worker ready: {url}", flush=True)
            return
