"""Sound-card capture through PortAudio with a callback that never takes the GIL.

The PortAudio callback runs on the audio thread. It only hands each channel of the interleaved
int16 block to that channel's `RingBuffer.push` (a `noexcept nogil` C method) and bumps plain C
counters: no allocation, no Python object, no lock, no blocking call (the contract
python-sounddevice documents for its callbacks). Everything else (opening, starting, reading
the rings) happens on Python threads.
"""

from libc.stdint cimport int16_t
from libc.string cimport memset
from cpython.ref cimport PyObject

from qa._native.ring cimport RingBuffer

from qa.errors import SourceError


cdef extern from "portaudio.h" nogil:
    ctypedef int PaError
    ctypedef int PaDeviceIndex
    ctypedef int PaHostApiIndex
    ctypedef double PaTime
    ctypedef unsigned long PaSampleFormat
    ctypedef unsigned long PaStreamFlags
    ctypedef unsigned long PaStreamCallbackFlags
    ctypedef void PaStream

    ctypedef struct PaStreamCallbackTimeInfo:
        PaTime inputBufferAdcTime
        PaTime currentTime
        PaTime outputBufferDacTime

    ctypedef int PaStreamCallback(
        const void* input, void* output, unsigned long frameCount,
        const PaStreamCallbackTimeInfo* timeInfo, PaStreamCallbackFlags statusFlags,
        void* userData) noexcept

    ctypedef struct PaStreamParameters:
        PaDeviceIndex device
        int channelCount
        PaSampleFormat sampleFormat
        PaTime suggestedLatency
        void* hostApiSpecificStreamInfo

    ctypedef struct PaDeviceInfo:
        int structVersion
        const char* name
        PaHostApiIndex hostApi
        int maxInputChannels
        int maxOutputChannels
        PaTime defaultLowInputLatency
        PaTime defaultLowOutputLatency
        PaTime defaultHighInputLatency
        PaTime defaultHighOutputLatency
        double defaultSampleRate

    PaError paNoError
    PaSampleFormat paInt16
    PaStreamFlags paNoFlag
    PaStreamCallbackFlags paInputUnderflow
    PaStreamCallbackFlags paInputOverflow
    int paContinue

    PaError Pa_Initialize()
    PaError Pa_Terminate()
    const char* Pa_GetErrorText(PaError errorCode)
    PaDeviceIndex Pa_GetDeviceCount()
    const PaDeviceInfo* Pa_GetDeviceInfo(PaDeviceIndex device)
    PaError Pa_OpenStream(
        PaStream** stream, const PaStreamParameters* inputParameters,
        const PaStreamParameters* outputParameters, double sampleRate,
        unsigned long framesPerBuffer, PaStreamFlags streamFlags,
        PaStreamCallback* streamCallback, void* userData)
    PaError Pa_StartStream(PaStream* stream)
    PaError Pa_StopStream(PaStream* stream)
    PaError Pa_CloseStream(PaStream* stream)
    PaError Pa_IsStreamActive(PaStream* stream)


cdef int _check(PaError err, str what) except -1:
    # The one place a PortAudio error code becomes an exception.
    if err < 0:
        raise SourceError(f"{what}: {Pa_GetErrorText(err).decode('utf-8', 'replace')}")
    return 0


cdef int _callback(
    const void* input, void* output, unsigned long frame_count,
    const PaStreamCallbackTimeInfo* time_info, PaStreamCallbackFlags status,
    void* user_data,
) noexcept nogil:
    cdef CaptureState* state = <CaptureState*>user_data
    cdef const int16_t* samples = <const int16_t*>input
    cdef int k
    state.callbacks += 1
    if status & paInputOverflow:
        state.overflows += 1
    if status & paInputUnderflow:
        state.underflows += 1
    # PortAudio passes NULL input when it has nothing (e.g. after an xrun); count, copy nothing.
    if samples == NULL:
        return paContinue
    state.frames += frame_count
    for k in range(state.channels):
        # Borrowed pointers: the cast compiles to a plain vtable call, no reference counting.
        (<RingBuffer>state.rings[k]).push(samples + k, <Py_ssize_t>frame_count, state.channels)
    return paContinue


def device_name(int index) -> str:
    """Returns PortAudio's name of input device `index` (the index `sounddevice` uses too).

    Raises:
        SourceError: PortAudio cannot start or has no device with that index.
    """
    _check(Pa_Initialize(), "cannot initialise PortAudio")
    try:
        if index < 0 or index >= Pa_GetDeviceCount():
            raise SourceError(f"no audio device with index {index}")
        return Pa_GetDeviceInfo(index).name.decode("utf-8", "replace")
    finally:
        Pa_Terminate()


cdef class CaptureStream:
    """An int16 input stream from one PortAudio device; channel k goes to `rings[k]`.

    Args:
        device_index: PortAudio device index (the same numbering as `sounddevice`).
        channels: Channels to open; must equal `len(rings)`.
        sample_rate: Frames per second to ask the device for.
        rings: One `RingBuffer` per channel, written by the callback, read by the caller.
        frames_per_buffer: Frames per callback (0 lets PortAudio choose).

    Raises:
        SourceError: PortAudio refuses the device, the rate or the channel count.
    """

    def __cinit__(self):
        memset(&self._state, 0, sizeof(CaptureState))
        self._stream = NULL
        self._initialised = False

    def __init__(self, int device_index, int channels, int sample_rate, tuple rings,
                 int frames_per_buffer=0):
        cdef PaStreamParameters params
        cdef const PaDeviceInfo* info
        cdef PaStream* stream = NULL
        cdef PaError err
        cdef int k
        if self._initialised:
            raise SourceError("CaptureStream is already open")
        if channels < 1 or channels > MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {channels}")
        if len(rings) != channels:
            raise ValueError(f"need one ring per channel: {channels} channels, {len(rings)} rings")
        for ring in rings:
            if not isinstance(ring, RingBuffer):
                raise TypeError(f"rings must be RingBuffer objects, got {type(ring).__name__}")
        if sample_rate <= 0 or frames_per_buffer < 0:
            raise ValueError("sample_rate must be positive and frames_per_buffer non-negative")
        _check(Pa_Initialize(), "cannot initialise PortAudio")
        self._initialised = True
        if device_index < 0 or device_index >= Pa_GetDeviceCount():
            raise SourceError(f"no audio device with index {device_index}")
        info = Pa_GetDeviceInfo(device_index)
        if info.maxInputChannels < channels:
            raise SourceError(
                f"device {device_index} ({info.name.decode('utf-8', 'replace')}) has "
                f"{info.maxInputChannels} input channels, {channels} asked for")
        self.rings = rings
        self.device_index = device_index
        self.sample_rate = sample_rate
        self.frames_per_buffer = frames_per_buffer
        for k in range(channels):
            self._state.rings[k] = <PyObject*>rings[k]
        self._state.channels = channels
        params.device = device_index
        params.channelCount = channels
        params.sampleFormat = paInt16
        # The rings decouple the consumer, so trade latency for fewer host overruns
        # (sounddevice's default for input streams is the same 'high' latency).
        params.suggestedLatency = info.defaultHighInputLatency
        params.hostApiSpecificStreamInfo = NULL
        with nogil:
            err = Pa_OpenStream(&stream, &params, NULL, sample_rate, frames_per_buffer,
                                paNoFlag, _callback, &self._state)
        _check(err, f"cannot open input device {device_index} at {sample_rate} Hz")
        self._stream = stream

    def start(self) -> None:
        """Starts capturing; the callback begins filling the rings."""
        cdef PaError err
        if self._stream == NULL:
            raise SourceError("capture stream is closed")
        with nogil:
            err = Pa_StartStream(self._stream)
        _check(err, "cannot start capture")

    def stop(self) -> None:
        """Stops capturing after the callback in flight returns (no-op if already stopped)."""
        cdef PaError err
        if self._stream == NULL:
            return
        if Pa_IsStreamActive(self._stream) != 1:
            return
        with nogil:
            err = Pa_StopStream(self._stream)
        _check(err, "cannot stop capture")

    def close(self) -> None:
        """Closes the stream and releases PortAudio; safe to call more than once."""
        cdef PaError err = paNoError
        cdef PaStream* stream = self._stream
        self._stream = NULL
        if stream != NULL:
            with nogil:
                err = Pa_CloseStream(stream)
        if self._initialised:
            self._initialised = False
            Pa_Terminate()
        _check(err, "cannot close capture")

    def __dealloc__(self):
        # Pa_CloseStream stops the callback first, so the rings outlive every push.
        if self._stream != NULL:
            Pa_CloseStream(self._stream)
            self._stream = NULL
        if self._initialised:
            Pa_Terminate()
            self._initialised = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def active(self) -> bool:
        """True while the callback is running."""
        return self._stream != NULL and Pa_IsStreamActive(self._stream) == 1

    @property
    def channels(self) -> int:
        """Channels captured (one ring each)."""
        return self._state.channels

    @property
    def callbacks(self) -> int:
        """Times the callback ran."""
        return self._state.callbacks

    @property
    def frames(self) -> int:
        """Frames the callback received (each frame: one sample per channel)."""
        return self._state.frames

    @property
    def overflows(self) -> int:
        """Callbacks that reported an input overflow (the host lost audio before us)."""
        return self._state.overflows

    @property
    def underflows(self) -> int:
        """Callbacks that reported an input underflow (the host padded audio with silence)."""
        return self._state.underflows
