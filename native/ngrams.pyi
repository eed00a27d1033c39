"""Types of qa._native.ngrams: hashed n-gram features for the intent classifiers."""

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

def crc32(text: str) -> int:
    """CRC-32 of the text's UTF-8, as `zlib.crc32(text.encode())`."""
def signed_buckets(
    grams: Iterable[str], dim: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Distinct strings hashed into `dim` signed buckets, L2-normalised: (index, values)."""
