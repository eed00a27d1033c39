"""The endpointer: cuts a framed, VAD-decided 16 kHz stream into utterances.

State machine, per frame `k` (all counts in frames; `qa.frontend.EndpointerOptions` turns the
documented millisecond options into these):

- idle: speech starts when at least `start_voiced` of the last `start_window` frames are
  voiced. It starts at the first voiced frame of that window (never before the previous
  utterance's end), less `pre_roll` frames.
- speaking: it ends when at least `end_unvoiced` of the last `end_window` frames are unvoiced;
  the utterance ends `post_roll` frames after its last voiced frame (never past frame `k`).
  An utterance reaching `max_frames` is cut at its quietest frame (lowest energy, earliest on
  ties) within its last `split_search` frames; that frame starts the next utterance.
- utterances shorter than `min_frames` are discarded and counted.

With `context` > 0 every utterance also carries the `context` samples of the stream just
before and just after it (fewer only at the stream's start, and at its end on `flush`): what a
resampler needs around a span to give exactly the samples that resampling the whole stream
gives. The frame before the open utterance is kept for it, and the samples after come from the
frames after its end, which the end decision has almost always seen already; when not (the
utterance ends on the newest frame), it is emitted with the next frame, or at `flush`.

The PCM of the open utterance lives in one buffer allocated at construction
(`max_frames + start_window + pre_roll` frames), so only an emitted utterance allocates.
`tests/reference/endpointer.py` is the plain-Python twin.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int16_t
from libc.string cimport memcpy, memmove, memset

cimport numpy as cnp
import numpy as np

cnp.import_array()


cdef class Endpointer:
    """Frame-level endpointer; emits `(start_sample, end_sample, pcm, forced_split)` tuples,
    `(start_sample, end_sample, pcm, forced_split, before, after)` with `context`.

    Args:
        frame_len: Samples per frame.
        start_window, start_voiced: Start when `start_voiced` of the last `start_window`
            frames are voiced.
        end_window, end_unvoiced: End when `end_unvoiced` of the last `end_window` frames
            are unvoiced.
        pre_roll: Frames kept before the first voiced frame.
        post_roll: Frames kept after the last voiced frame.
        max_frames: Longest utterance; longer speech is split.
        split_search: Frames at the end of an over-long utterance searched for the split.
        min_frames: Shorter utterances are discarded.
        vad: The framer and VAD `process` feeds; None when frames come from `push_frames`.
        base_sample: Sample index of the first frame on the output clock.
        context: Samples of the stream carried on each side of an utterance (0 to
            `frame_len`; 0: none, and 4-tuples).
    """

    def __cinit__(self, *args, **kwargs):
        self._buf = NULL
        self._bv = NULL
        self._be = NULL
        self._ring = NULL

    def __init__(self, int frame_len, int start_window, int start_voiced, int end_window,
                 int end_unvoiced, int pre_roll, int post_roll, int max_frames,
                 int split_search, int min_frames, FrameVad vad=None,
                 long long base_sample=0, int context=0):
        if frame_len <= 0:
            raise ValueError("frame_len must be positive")
        if not 1 <= start_voiced <= start_window:
            raise ValueError("need 1 <= start_voiced <= start_window")
        if not 1 <= end_unvoiced <= end_window:
            raise ValueError("need 1 <= end_unvoiced <= end_window")
        if pre_roll < 0 or post_roll < 0 or min_frames < 0:
            raise ValueError("pre_roll, post_roll and min_frames must be >= 0")
        # A split needs at least two frames: one for each part.
        if max_frames < 2 or not 1 <= split_search <= max_frames - 1:
            raise ValueError("need max_frames >= 2 and 1 <= split_search < max_frames")
        if vad is not None and vad.frame_len != frame_len:
            raise ValueError(f"vad frames are {vad.frame_len} samples, not {frame_len}")
        if not 0 <= context <= frame_len:
            raise ValueError(f"context must be 0..{frame_len} samples, got {context}")
        self.frame_len = frame_len
        self.start_window = start_window
        self.start_voiced = start_voiced
        self.end_window = end_window
        self.end_unvoiced = end_unvoiced
        self.pre_roll = pre_roll
        self.post_roll = post_roll
        self.max_frames = max_frames
        self.split_search = split_search
        self.min_frames = min_frames
        self.base_sample = base_sample
        self.context = context
        self._waiting = None
        self._vad = vad
        self._cap = max_frames + start_window + pre_roll
        self._ring_len = max(start_window, end_window)
        self._buf = <int16_t*> PyMem_Malloc(<size_t> self._cap * frame_len * sizeof(int16_t))
        self._bv = <unsigned char*> PyMem_Malloc(self._cap)
        self._be = <double*> PyMem_Malloc(self._cap * sizeof(double))
        self._ring = <unsigned char*> PyMem_Malloc(self._ring_len)
        if self._buf == NULL or self._bv == NULL or self._be == NULL or self._ring == NULL:
            raise MemoryError()
        memset(self._ring, 0, self._ring_len)
        self._buf_first = 0
        self._buf_n = 0
        self._u = 0
        self._last_voiced = -1
        self._prev_end = 0
        self.frames = 0
        self.utterances = 0
        self.discarded = 0
        self.speaking = False
        self._out = []

    def __dealloc__(self):
        PyMem_Free(self._buf)
        PyMem_Free(self._bv)
        PyMem_Free(self._be)
        PyMem_Free(self._ring)

    @property
    def open_start_sample(self):
        """Start sample of the open utterance, or None when not speaking."""
        if not self.speaking:
            return None
        return self.base_sample + self._u * self.frame_len

    @property
    def settled_sample(self):
        """Every utterance not yet emitted starts at or after this sample.

        While idle, a start found later reaches back at most `start_window - 1` frames for
        its first voiced frame and `pre_roll` frames more, never before the previous end.
        """
        if self.speaking:
            return self.base_sample + self._u * self.frame_len
        cdef long long first = max(self.frames - self.start_window + 1 - self.pre_roll,
                                   self._prev_end, 0)
        if self._waiting is not None:
            # An utterance closed on the newest frame, waiting for the samples after it.
            return self._waiting[0]
        return self.base_sample + first * self.frame_len

    cdef int _keep_from(self, long long first) except -1:
        """Drop buffered frames before frame index `first` (with `context`, before the frame
        before it: an utterance starting at `first` takes its leading context from there)."""
        if self.context:
            first -= 1
        cdef long long drop = first - self._buf_first
        if drop <= 0:
            return 0
        if drop >= self._buf_n:
            self._buf_first += self._buf_n
            self._buf_n = 0
            return 0
        cdef int rest = self._buf_n - <int> drop
        memmove(self._buf, self._buf + drop * self.frame_len,
                <size_t> rest * self.frame_len * sizeof(int16_t))
        memmove(self._bv, self._bv + drop, rest)
        memmove(self._be, self._be + drop, rest * sizeof(double))
        self._buf_first = first
        self._buf_n = rest
        return 0

    cdef int _emit(self, long long end, bint forced) except -1:
        """Close frames [u, end) as one utterance, or count it as a blip when too short."""
        cdef long long n = end - self._u
        if n < self.min_frames or n <= 0:
            self.discarded += 1
            return 0
        cdef long long off = (self._u - self._buf_first) * self.frame_len
        cdef long long lead, tail
        pcm = np.empty(n * self.frame_len, dtype=np.int16)
        memcpy(cnp.PyArray_DATA(pcm), self._buf + off, n * self.frame_len * sizeof(int16_t))
        found = (self.base_sample + self._u * self.frame_len,
                 self.base_sample + end * self.frame_len, pcm, forced)
        self.utterances += 1
        if not self.context:
            self._out.append(found)
            return 0
        # The frame before `u` is held (see `_keep_from`) unless the stream starts at `u`.
        lead = min(<long long> self.context, off)
        before = self._copy(off - lead, lead)
        tail = (self._buf_first + self._buf_n - end) * self.frame_len
        if tail <= 0:
            self._waiting = found + (before,)
            return 0
        off = (end - self._buf_first) * self.frame_len
        self._out.append(found + (before, self._copy(off, min(tail, <long long> self.context))))
        return 0

    cdef object _copy(self, long long off, long long n):
        """`n` buffered samples from sample `off` of the buffer, as a new array."""
        out = np.empty(n, dtype=np.int16)
        if n > 0:
            memcpy(cnp.PyArray_DATA(out), self._buf + off, n * sizeof(int16_t))
        return out

    cdef int _release(self, const int16_t* after, Py_ssize_t n) except -1:
        """Emit the waiting utterance with the `n` samples that follow it."""
        tail = np.empty(n, dtype=np.int16)
        if n > 0:
            memcpy(cnp.PyArray_DATA(tail), after, n * sizeof(int16_t))
        self._out.append(self._waiting + (tail,))
        self._waiting = None
        return 0

    cdef int push_frame(self, const int16_t* frame, bint voiced, double energy) except -1:
        """Advance the state machine by one frame."""
        cdef long long k = self.frames
        cdef long long lo, j, s, q, e
        cdef int count, slot
        cdef double best
        if self._waiting is not None:
            self._release(frame, self.context)
        if self._buf_n == self._cap:
            # Only reachable while idle (speech is split at max_frames < cap): keep what a
            # start could still reach back to.
            self._keep_from(k - self.start_window - self.pre_roll)
        slot = self._buf_n
        memcpy(self._buf + <Py_ssize_t> slot * self.frame_len, frame,
               self.frame_len * sizeof(int16_t))
        self._bv[slot] = voiced
        self._be[slot] = energy
        self._buf_n += 1
        self._ring[k % self._ring_len] = voiced
        self.frames += 1

        if not self.speaking:
            lo = max(k - self.start_window + 1, 0)
            count = 0
            for j in range(lo, k + 1):
                count += self._ring[j % self._ring_len]
            if count < self.start_voiced:
                return 0
            s = k
            for j in range(max(lo, self._prev_end), k + 1):
                if self._ring[j % self._ring_len]:
                    s = j
                    break
            self._last_voiced = k
            for j in range(k, s - 1, -1):
                if self._ring[j % self._ring_len]:
                    self._last_voiced = j
                    break
            self._u = max(s - self.pre_roll, self._prev_end, 0)
            self._keep_from(self._u)
            self.speaking = True
            return 0

        if voiced:
            self._last_voiced = k
        if k + 1 - self._u >= self.max_frames:
            q = max(self._u + 1, k + 1 - self.split_search)
            best = self._be[q - self._buf_first]
            for j in range(q + 1, k + 1):
                if self._be[j - self._buf_first] < best:
                    best = self._be[j - self._buf_first]
                    q = j
            self._emit(q, True)
            self._u = q
            self._keep_from(q)
            return 0
        lo = max(k - self.end_window + 1, 0)
        count = 0
        for j in range(lo, k + 1):
            count += 1 - self._ring[j % self._ring_len]
        if count < self.end_unvoiced:
            return 0
        e = max(min(self._last_voiced + 1 + self.post_roll, k + 1), self._u)
        self._emit(e, False)
        self._prev_end = e
        self.speaking = False
        self._keep_from(max(e, k + 1 - self.start_window - self.pre_roll))
        return 0

    def process(self, pcm):
        """Frame, classify and endpoint samples (needs the `vad` given at construction).

        Args:
            pcm: 1-D int16 samples continuing the stream.

        Returns:
            Utterances closed by these samples, as
            `(start_sample, end_sample, pcm, forced_split)` tuples.
        """
        if self._vad is None:
            raise ValueError("this Endpointer has no FrameVad; use push_frames")
        pcm = as_int16_1d(pcm)
        cdef const int16_t* data = <const int16_t*> cnp.PyArray_DATA(pcm)
        cdef Py_ssize_t n = cnp.PyArray_DIM(pcm, 0)
        cdef Py_ssize_t pos = 0
        cdef FrameVad vad = self._vad
        cdef int voiced
        while pos < n:
            pos += vad.take(data + pos, n - pos)
            if vad.ready():
                voiced = vad.classify()
                self.push_frame(vad.frame_ptr(), voiced, vad.energy())
        return self._take_out()

    def push_frames(self, pcm, voiced, energy):
        """Endpoint frames whose decisions and energies were made elsewhere.

        Args:
            pcm: int16 samples, `len(voiced) * frame_len` of them.
            voiced: One truth value per frame.
            energy: One float per frame (used to pick forced split points).

        Returns:
            Closed utterances, as in `process`.
        """
        cdef const int16_t[::1] view = np.ascontiguousarray(pcm, dtype=np.int16)
        cdef const unsigned char[::1] vv = np.ascontiguousarray(voiced, dtype=np.uint8)
        cdef const double[::1] ev = np.ascontiguousarray(energy, dtype=np.float64)
        cdef Py_ssize_t i
        if vv.shape[0] != ev.shape[0] or view.shape[0] != vv.shape[0] * self.frame_len:
            raise ValueError("need one decision and one energy per frame of pcm")
        for i in range(vv.shape[0]):
            self.push_frame(&view[i * self.frame_len], vv[i] != 0, ev[i])
        return self._take_out()

    def flush(self):
        """End of stream: close the open utterance (a trailing partial frame is not used).

        Returns:
            Closed utterances, as in `process`.
        """
        cdef long long e
        if self.speaking:
            e = max(min(self._last_voiced + 1 + self.post_roll, self.frames), self._u)
            self._emit(e, False)
            self._prev_end = e
            self.speaking = False
        if self._waiting is not None:
            # What follows is the partial frame the VAD holds, then the end of the stream.
            if self._vad is None:
                self._release(NULL, 0)
            else:
                self._release(self._vad.frame_ptr(), min(self._vad._fill, self.context))
        return self._take_out()

    def _take_out(self):
        out = self._out
        self._out = []
        return out
