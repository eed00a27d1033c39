"""Types of qa._native.ring (semantics in ring.pxd)."""

import numpy as np
import numpy.typing as npt

class RingBuffer:
    """Single-producer single-consumer int16 ring buffer with absolute sample positions.

    One thread writes, one thread reads. On overrun the newest audio wins and the oldest unread
    samples are dropped and counted. Invariant once both sides are idle:
    ``samples returned by read + dropped + available == written``.
    """

    def __init__(self, capacity: int) -> None: ...
    @property
    def capacity(self) -> int:
        """Number of samples held."""
    def write(self, samples: npt.NDArray[np.int16]) -> None:
        """Append samples (1-D C-contiguous int16 buffer); releases the GIL while copying."""
    def write_channel(self, frames: npt.NDArray[np.int16], channel: int) -> None:
        """Append channel ``channel`` of interleaved ``(n, channels)`` int16 frames."""
    def read(self, out: npt.NDArray[np.int16]) -> int:
        """Copy up to ``len(out)`` oldest unread samples into ``out``; return the count.

        ``out[0]`` is absolute sample ``last_read_start``; samples lost to an overrun before
        or during the read are skipped (and counted in ``dropped``), never returned torn.
        """
    @property
    def written(self) -> int:
        """Total samples ever written."""
    @property
    def consumed(self) -> int:
        """Absolute index of the next sample ``read`` returns unless an overrun skips past it.

        Equals ``last_read_start + count`` of the latest read; jumps forward after an overrun.
        """
    @property
    def last_read_start(self) -> int:
        """Absolute index of ``out[0]`` of the latest ``read``."""
    @property
    def available(self) -> int:
        """Unread samples still held (at most ``capacity``)."""
    @property
    def dropped(self) -> int:
        """Total samples lost to overrun (including overwritten ones not yet skipped)."""
