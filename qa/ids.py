"""Call ids that never repeat: across calls, processes, restarts and machines.

A source used to number its calls from 1 in every process, so a restarted service or a
second `qa score` of the same file reused an id and the store merged two calls into one.
Ids are now a readable prefix plus a time-ordered UUID (the layout of RFC 9562 UUIDv7: 48 bits
of Unix milliseconds, then a 12-bit counter and 62 random bits), so ids with the same prefix
sort by start time and two processes collide only if 74 random bits do.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_call_id", "time_uuid"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def time_uuid() -> uuid.UUID:
    """A new UUIDv7: time-ordered, strictly increasing within this process."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            # A random start leaves room to count up while keeping ids unguessable.
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            # Same millisecond (or the clock stepped back): count up on the last time, so
            # ids made here never go backwards.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)


def new_call_id(prefix: str) -> str:
    """A call id unique across processes and restarts: `<prefix>-<UUIDv7>`.

    Args:
        prefix: A readable part naming the source (`file-<stem>`, `rtp-<port>`, ...).
    """
    return f"{prefix}-{time_uuid()}"
