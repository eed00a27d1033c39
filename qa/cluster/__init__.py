"""Recognition across machines: capture nodes hand utterances to `qa worker` processes
through NATS JetStream and get their segments back (docs/scaling.md).

`wire` is the message format, `streams` the JetStream layout, `remote` the capture node's
backend for the pipeline, `worker` the recognition worker. `nats-py` is imported only when
one of them connects.
"""

from qa.cluster.remote import RemoteOptions, RemoteTranscriber
from qa.cluster.streams import StreamOptions
from qa.cluster.wire import Result, Work, decode_result, decode_work, encode_result, encode_work
from qa.cluster.worker import Worker, WorkerOptions, WorkerStats

__all__ = [
    "RemoteOptions",
    "RemoteTranscriber",
    "Result",
    "StreamOptions",
    "Work",
    "Worker",
    "WorkerOptions",
    "WorkerStats",
    "decode_result",
    "decode_work",
    "encode_result",
    "encode_work",
]
