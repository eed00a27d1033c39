"""Pure-Python twin of `qa._native.ring.RingBuffer` (same semantics, single-threaded).

The oracle for property tests and the baseline for benchmarks: what a user would write with a
list and two counters. See native/ring.pxd for the semantics both implement.
"""

from __future__ import annotations

import numpy as np


class RingBufferRef:
    """SPSC int16 ring with absolute positions; newest audio wins, losses are counted."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._buf = [0] * capacity
        self.written = 0
        self.consumed = 0
        self.last_read_start = 0
        self._skipped = 0

    def write(self, samples: np.ndarray) -> None:
        """Append samples; overwrite the oldest unread ones when full."""
        values = [int(v) for v in samples]
        for offset, value in enumerate(values[-self.capacity :]):
            pos = self.written + len(values) - min(len(values), self.capacity) + offset
            self._buf[pos % self.capacity] = value
        self.written += len(values)

    def read(self, out: np.ndarray) -> int:
        """Copy up to len(out) oldest unread samples into out; return the count."""
        if self.written - self.consumed > self.capacity:
            self._skipped += self.written - self.capacity - self.consumed
            self.consumed = self.written - self.capacity
        count = min(len(out), self.written - self.consumed)
        for i in range(count):
            out[i] = self._buf[(self.consumed + i) % self.capacity]
        self.last_read_start = self.consumed
        self.consumed += count
        return count

    @property
    def available(self) -> int:
        """Unread samples still held."""
        return min(self.written - self.consumed, self.capacity)

    @property
    def dropped(self) -> int:
        """Samples lost to overrun, skipped or already overwritten."""
        return self._skipped + max(self.written - self.capacity - self.consumed, 0)
