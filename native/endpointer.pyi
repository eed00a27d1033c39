import numpy as np
import numpy.typing as npt

from qa._native.vad import FrameVad

#: `(start_sample, end_sample, pcm, forced_split)`, and with `context` also `before`, `after`.
UtteranceTuple = (
    tuple[int, int, npt.NDArray[np.int16], bool]
    | tuple[int, int, npt.NDArray[np.int16], bool, npt.NDArray[np.int16], npt.NDArray[np.int16]]
)

class Endpointer:
    frame_len: int
    start_window: int
    start_voiced: int
    end_window: int
    end_unvoiced: int
    pre_roll: int
    post_roll: int
    max_frames: int
    split_search: int
    min_frames: int
    base_sample: int
    frames: int
    utterances: int
    discarded: int
    speaking: bool
    context: int
    def __init__(
        self,
        frame_len: int,
        start_window: int,
        start_voiced: int,
        end_window: int,
        end_unvoiced: int,
        pre_roll: int,
        post_roll: int,
        max_frames: int,
        split_search: int,
        min_frames: int,
        vad: FrameVad | None = None,
        base_sample: int = 0,
        context: int = 0,
    ) -> None: ...
    @property
    def open_start_sample(self) -> int | None: ...
    @property
    def settled_sample(self) -> int: ...
    def process(self, pcm: npt.NDArray[np.int16]) -> list[UtteranceTuple]: ...
    def push_frames(
        self,
        pcm: npt.NDArray[np.int16],
        voiced: npt.ArrayLike,
        energy: npt.ArrayLike,
    ) -> list[UtteranceTuple]: ...
    def flush(self) -> list[UtteranceTuple]: ...
