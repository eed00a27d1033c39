import numpy as np
import numpy.typing as npt

VALID_RATES: tuple[int, ...]
VALID_FRAME_MS: tuple[int, ...]

class FrameVad:
    sample_rate: int
    frame_ms: int
    mode: int
    frame_len: int
    frames: int
    voiced_frames: int
    def __init__(self, sample_rate: int = 16000, frame_ms: int = 30, mode: int = 2) -> None: ...
    @property
    def pending(self) -> int: ...
    def process(
        self, pcm: npt.NDArray[np.int16]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]: ...
    def reset(self) -> None: ...
