"""RingBuffer: compiled module against its pure-Python twin, and under a real second thread."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa._native.ring import RingBuffer
from tests.reference.ring import RingBufferRef

# Values of sample number i; int16 wraps every 65,536 samples, far more than any test capacity.
WRAP = 1 << 16


def _samples(start: int, n: int) -> np.ndarray:
    return ((np.arange(start, start + n) + WRAP // 2) % WRAP - WRAP // 2).astype(np.int16)


def _state(rb) -> tuple[int, ...]:
    return (rb.written, rb.consumed, rb.available, rb.dropped, rb.last_read_start)


ops = st.lists(st.tuples(st.sampled_from(["w", "r"]), st.integers(0, 90)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 64), ops=ops)
def test_matches_reference_on_random_writes_and_reads(capacity, ops):
    native, ref = RingBuffer(capacity), RingBufferRef(capacity)
    total_read = 0
    for op, n in ops:
        if op == "w":
            data = _samples(native.written, n)
            native.write(data)
            ref.write(data)
        else:
            out_n, out_r = np.zeros(n, np.int16), np.zeros(n, np.int16)
            count = native.read(out_n)
            assert count == ref.read(out_r)
            np.testing.assert_array_equal(out_n[:count], out_r[:count])
            np.testing.assert_array_equal(out_n[:count], _samples(native.last_read_start, count))
            total_read += count
        assert _state(native) == _state(ref)
        assert total_read + native.dropped + native.available == native.written


def test_overrun_keeps_newest_and_counts_the_rest():
    rb = RingBuffer(10)
    rb.write(_samples(0, 25))  # one write larger than the ring: only its last 10 survive
    rb.write(_samples(25, 3))
    assert rb.dropped == 18
    out = np.zeros(32, np.int16)
    count = rb.read(out)
    assert (count, rb.last_read_start, rb.consumed, rb.dropped) == (10, 18, 28, 18)
    np.testing.assert_array_equal(out[:count], _samples(18, 10))


def test_write_channel_deinterleaves_stereo_frames():
    frames = np.stack([_samples(0, 50), -_samples(0, 50)], axis=1)  # (n, 2), C-contiguous
    left, right = RingBuffer(64), RingBuffer(64)
    left.write_channel(frames, 0)
    right.write_channel(frames, 1)
    out = np.zeros(64, np.int16)
    assert left.read(out) == 50
    np.testing.assert_array_equal(out[:50], frames[:, 0])
    assert right.read(out) == 50
    np.testing.assert_array_equal(out[:50], frames[:, 1])
    with pytest.raises(ValueError, match="channel 2"):
        left.write_channel(frames, 2)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0)
    rb = RingBuffer(8)
    with pytest.raises(ValueError):
        rb.write(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        rb.read(np.zeros(4, np.int32))
    frozen = np.zeros(4, np.int16)
    frozen.flags.writeable = False
    with pytest.raises(ValueError):
        rb.read(frozen)
    with pytest.raises(TypeError):
        rb.write(None)


def test_any_int16_buffer_is_accepted():
    """ndarrays take a fast path; other int16 buffers (views, array.array) the general one."""
    import array

    rb = RingBuffer(16)
    rb.write(np.arange(3, dtype=np.int16))
    rb.write(memoryview(np.arange(3, 5, dtype=np.int16)))
    rb.write(array.array("h", [5, 6]))
    rb.write(np.arange(10, dtype=np.int16)[::2][:0])  # empty, strided: nothing to copy
    out = array.array("h", [0] * 8)
    assert rb.read(out) == 7
    assert list(out[:7]) == [0, 1, 2, 3, 4, 5, 6]


@pytest.fixture
def fast_thread_switching():
    # Switch threads every 10 µs (default 5 ms) so producer and consumer interleave often.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_thread_switching")
def test_two_threads_read_in_order_and_account_for_every_sample():
    """A real producer thread (GIL released while copying) races a consumer on a small ring.

    The producer writes bursts of 4 chunks (1,280 samples > capacity) between yields, so
    overruns happen while the consumer is reading; every sample returned must be intact.
    """
    capacity, chunk, total = 1000, 320, 400_000  # 320 = 20 ms at 16 kHz
    rb = RingBuffer(capacity)
    data = _samples(0, total)
    done = threading.Event()

    def produce() -> None:
        for number, start in enumerate(range(0, total, chunk)):
            rb.write(data[start : start + chunk])
            if number % 4 == 3:
                time.sleep(0)  # yield the GIL to the consumer
        done.set()

    out = np.zeros(300, np.int16)
    next_index, total_read, reads = 0, 0, 0
    producer = threading.Thread(target=produce)
    producer.start()
    while True:
        finished = done.is_set()
        count = rb.read(out)
        if count:
            start = rb.last_read_start
            assert start >= next_index  # in order; a gap is an overrun, counted in dropped
            np.testing.assert_array_equal(out[:count], data[start : start + count])
            next_index = start + count
            total_read += count
            reads += 1
        elif finished:
            break
    producer.join()
    assert rb.written == rb.consumed == total
    assert total_read + rb.dropped == total
    assert rb.dropped > 0 and reads > 50
