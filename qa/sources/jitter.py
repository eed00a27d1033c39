"""A jitter buffer for one RTP stream: puts packets back in sequence order, within a window.

The buffer knows sequence numbers and arrival times only; what a packet carries is opaque to
it. It releases the next expected packet as soon as it is there. When one is missing it waits
until the oldest packet it holds has waited `window_s`, then gives the missing ones up as lost
and goes on, so a lost packet delays the stream by at most the window. Mapping released packets
onto the call clock (and filling what was lost with silence) is the stream's job, from RTP
timestamps (see `qa.sources.rtp`).

Every packet gets exactly one verdict on arrival: accepted, duplicate (that sequence number
was already received) or late (it arrives after its slot was released, i.e. after it was
counted lost). Sequence numbers are 16-bit and wrap; the buffer works on extended (unwrapped)
numbers.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
#: How many released sequence numbers we remember, to tell a duplicate from a late packet.
#: 1,024 packets is 20 s of 20 ms packets, far longer than any packet stays in the network.
_HISTORY = 1024


def extend(value: int, reference: int, modulus: int) -> int:
    """Unwraps a wrapping counter: the extended value nearest to `reference`.

    Args:
        value: The wrapped value, in `[0, modulus)`.
        reference: An extended value already seen (e.g. the highest so far).
        modulus: `2**16` for RTP sequence numbers, `2**32` for timestamps.

    Returns:
        The integer congruent to `value` modulo `modulus` within half a modulus of `reference`.
    """
    delta = (value - reference) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return reference + delta


def extend_seq(seq: int, reference: int) -> int:
    """`extend` for 16-bit RTP sequence numbers."""
    return extend(seq, reference, _SEQ_MOD)


def extend_ts(ts: int, reference: int) -> int:
    """`extend` for 32-bit RTP timestamps."""
    return extend(ts, reference, _TS_MOD)


class Verdict(enum.StrEnum):
    """What the buffer made of an arriving packet."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class Released(Generic[T]):
    """A packet leaving the buffer, in sequence order.

    Attributes:
        seq: Its extended sequence number.
        item: What the caller stored with it.
        lost_before: How many sequence numbers just before it were given up as lost.
    """

    seq: int
    item: T
    lost_before: int


class JitterBuffer(Generic[T]):
    """Reorders one stream's packets by sequence number within a time window.

    Not thread-safe: one stream is fed from one thread. Times are `time.monotonic()` seconds,
    passed in so that tests can drive the clock.
    """

    def __init__(self, window_s: float) -> None:
        """Args:
        window_s: How long a packet may wait for a missing predecessor before that one is
            declared lost (the jitter the stream tolerates).
        """
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        self.window_s = window_s
        self._held: dict[int, tuple[float, T]] = {}
        self._next: int | None = None  # extended seq of the next packet to release
        self._highest: int | None = None  # highest extended seq seen, the unwrap reference
        self._released: set[int] = set()
        self._released_order: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def highest(self) -> int | None:
        """The highest extended sequence number accepted so far (None before the first)."""
        return self._highest

    def classify(self, seq: int) -> tuple[Verdict, int]:
        """Says what `push` would make of a packet with 16-bit sequence number `seq`.

        Returns:
            The verdict and the packet's extended sequence number.
        """
        ext = seq if self._highest is None else extend_seq(seq, self._highest)
        if ext in self._held or ext in self._released:
            return Verdict.DUPLICATE, ext
        # Before the first release a lower number is just the stream's start arriving out of
        # order, not a late packet.
        if self._next is not None and ext < self._next and self._released_order:
            return Verdict.LATE, ext
        return Verdict.ACCEPTED, ext

    def push(self, seq: int, item: T, now: float) -> tuple[Verdict, int]:
        """Offers an arriving packet; keeps it only when accepted.

        Args:
            seq: Its 16-bit RTP sequence number.
            item: What to hand back when it is released.
            now: Arrival time (monotonic seconds).

        Returns:
            The verdict and the extended sequence number.
        """
        verdict, ext = self.classify(seq)
        if verdict is Verdict.ACCEPTED:
            self._held[ext] = (now, item)
            if self._highest is None or ext > self._highest:
                self._highest = ext
            if self._next is None or ext < self._next:
                self._next = ext
        return verdict, ext

    def pop_ready(self, now: float) -> list[Released[T]]:
        """Releases, in order, every packet that may leave at time `now`."""
        out: list[Released[T]] = []
        while self._held:
            assert self._next is not None  # set by the first push
            lost = 0
            if self._next not in self._held:
                oldest = min(arrived for arrived, _ in self._held.values())
                if now - oldest < self.window_s:
                    break
                first = min(self._held)
                lost = first - self._next
                self._next = first
            out.append(self._release(lost))
        return out

    def flush(self) -> list[Released[T]]:
        """Releases everything held, in order, giving up every gap (the stream has ended)."""
        out: list[Released[T]] = []
        while self._held:
            assert self._next is not None
            first = min(self._held)
            lost = first - self._next
            self._next = first
            out.append(self._release(lost))
        return out

    def _release(self, lost: int) -> Released[T]:
        seq = self._next
        assert seq is not None
        _, item = self._held.pop(seq)
        self._released.add(seq)
        self._released_order.append(seq)
        if len(self._released_order) > _HISTORY:
            self._released.discard(self._released_order.popleft())
        self._next = seq + 1
        return Released(seq, item, lost)
