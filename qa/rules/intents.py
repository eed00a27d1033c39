"""Rules by meaning: a rule's examples and counter-examples, learned with a sentence encoder.

A pack author writes five to twenty `examples` of what counts for a rule and a few
`counter_examples` of near misses that must not (docs/rules.md, "Intents"); a rule may also
name a `behaviour` of the built-in library (`qa/rules/library/`), whose examples for the
standard call-centre behaviours (greeting, identity check, apology, shirking, ...) then count
as its own. A segment matches a rule's intent when one of its clauses does:

1. **Clauses.** A turn can hold several acts ("Thanks. I'll arrange a refund. Anything
   else?"), so the segment is cut into sentences, long sentences into their comma clauses,
   and unpunctuated run-ons (as the recogniser writes them) into overlapping word windows;
   adjacent short clauses are also scored together. Each candidate is one span of the text.
2. **Classifier.** Every text is embedded once (`qa.rules.encoder`, multilingual USE) and
   its word and character n-grams are hashed. Per rule, a ridge classifier over both (and a
   negation flag) is fitted when the pack loads: the rule's examples and phrases (and its
   behaviour's library examples) against its counter-examples, the other rules' examples and
   the library's neutral call talk. A Gaussian kernel on the embeddings beside those linear
   features (kernel ridge) lets a rule own a pocket of meaning no hyperplane separates.
   One matrix inverse serves every rule, and the fitted weights are cached on disk like the
   embeddings, so a pack is ready in a fraction of a second after its first load.
   Nearest-neighbour similarity alone confused acts that share words; docs/intents.md has
   the comparison.
3. **Polarity.** Embeddings barely see a negation (我知道了 scores 0.82 against 我不知道), so
   the negation is a feature of its own, and a span whose polarity none of a rule's
   examples share cannot match it (an affirmative "I know exactly what happened" never
   matches a rule whose every example says "I don't know"). Fixed expressions that contain a
   negation word but do not negate (不好意思, 对不起, 没问题, "no problem") are masked first;
   A-not-A questions (是不是, 有没有) are questions, not negations.
4. **Threshold.** The classifier's score must reach the rule's threshold (calibrated per
   rule by `qa rules tune` for a stated precision; the pack's default otherwise). Each hit
   reports its score, the nearest example by cosine similarity and the clause.

Phrase hits (exact, fuzzy, pinyin) stay the high-precision path; a phrase hit of a forbidden
rule is only dropped when the clause around it is plainly not the rule ("I don't know if
you've seen our app" for the phrase "I don't know"): `veto`.
"""

from __future__ import annotations

import functools
import logging
import re
import zlib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np

from qa._native.ngrams import signed_buckets
from qa.rules.normalize import is_cjk, normalize

log = logging.getLogger("qa.rules.intents")

#: Words that negate what follows them (after normalisation: apostrophes removed).
NEGATION_WORDS = frozenset(
    {
        "not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere",
        "cannot", "cant", "dont", "doesnt", "didnt", "wont", "wouldnt", "shouldnt", "couldnt",
        "isnt", "arent", "wasnt", "werent", "havent", "hasnt", "hadnt", "aint", "dunno",
        "mustnt", "neednt", "nope", "nah",
    }
)  # fmt: skip
#: Chinese characters that negate (没 and 別 arrive simplified after normalisation).
NEGATION_CHARS = frozenset("不没别未无非莫勿甭")
#: Fixed expressions that hold a negation word without negating anything.
_IDIOMS_EN = re.compile(
    r"\b(?:no problems?|not a problem|no worries|no trouble|never mind|no doubt|"
    r"no matter what|no later than|nothing else|if not)\b"
)
_IDIOMS_ZH = re.compile(
    r"不好意思|对不起|不客气|别客气|不用客气|不用谢|没关系|没问题|没事|不错|不过|不仅|不但|"
    r"不断|不少|不久|非常|无论|并且|差不多|了不起|否则|要不然|不然|毫无疑问|无误|不便|"
    r"(.)[不没]\1"  # A-not-A questions: 是不是, 有没有, 能不能
)
#: Sentence ends and clause breaks, in both scripts.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；…])\s*|\n+")
_CLAUSE_BREAK = re.compile(r"(?<=[,，、:：])\s*")
#: A sentence longer than this (words, or CJK characters / 2) is also scored clause by clause.
LONG_SENTENCE = 9
#: Word window for unpunctuated run-ons, and its stride.
WINDOW_WORDS = 8
WINDOW_STRIDE = 4
#: A phrase of at most this many words (see `_size`) is judged by the words around it.
SHORT_PHRASE = 2
#: The most spans scored per segment (all go through the encoder in one batch per segment;
#: each new span adds the token contexts it does not share with the others).
MAX_SPANS = 16


@functools.lru_cache(maxsize=8192)
def is_negated(text: str) -> bool:
    """True when `text` (any language, raw or normalised) says something is not so.

    Cached: agents repeat their script, and a span is judged once per rule pack it meets."""
    norm = normalize(text)
    norm = _IDIOMS_EN.sub(" ", norm)
    norm = _IDIOMS_ZH.sub(" ", norm)
    for word in norm.split():
        if word in NEGATION_WORDS:
            return True
    return any(ch in NEGATION_CHARS for ch in norm if is_cjk(ch))


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a segment's text, `[start, end)` in characters of the original."""

    start: int
    end: int
    text: str


#: A CJK unified ideograph (`qa.rules.normalize.is_cjk`'s ranges), for counting them fast.
_CJK = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\uf900-\ufaff]")


@functools.lru_cache(maxsize=8192)
def _size(text: str) -> int:
    """Length in words, counting two Chinese characters as one word."""
    latin, cjk = _CJK.subn(" ", text)
    return len(latin.split()) + cjk // 2


def _pieces(text: str, pattern: re.Pattern[str], offset: int) -> list[Span]:
    spans, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() > pos or m.end() > pos:
            piece = text[pos : m.start()]
            if piece.strip():
                spans.append(_strip(piece, offset + pos))
            pos = m.end()
    if text[pos:].strip():
        spans.append(_strip(text[pos:], offset + pos))
    return spans


def _strip(piece: str, at: int) -> Span:
    left = len(piece) - len(piece.lstrip())
    body = piece.strip()
    return Span(at + left, at + left + len(body), body)


def _windows(sentence: Span) -> list[Span]:
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence.text)]
    cjk = sum(1 for ch in sentence.text if is_cjk(ch))
    if cjk > len(sentence.text) // 2:
        # Unpunctuated Chinese: windows of characters instead of words.
        size, stride = 2 * WINDOW_WORDS, 2 * WINDOW_STRIDE
        bounds = [(i, min(i + size, len(sentence.text))) for i in
                  range(0, max(1, len(sentence.text) - size + stride), stride)]
    else:
        if len(words) <= WINDOW_WORDS + WINDOW_STRIDE:
            return []
        bounds = [(words[i][0], words[min(i + WINDOW_WORDS, len(words)) - 1][1])
                  for i in range(0, max(1, len(words) - WINDOW_WORDS + WINDOW_STRIDE),
                                 WINDOW_STRIDE)]
    return [
        Span(sentence.start + a, sentence.start + b, sentence.text[a:b].strip())
        for a, b in bounds
        if sentence.text[a:b].strip()
    ]


def spans(text: str) -> list[Span]:
    """The candidate spans of a segment's text: sentences, clauses, pairs, windows, whole."""
    text = text.strip()
    if not text:
        return []
    sentences = _pieces(text, _SENTENCE_END, 0)
    out: list[Span] = []
    for sentence in sentences:
        out.append(sentence)
        clauses = _pieces(sentence.text, _CLAUSE_BREAK, sentence.start)
        if len(clauses) > 1 and _size(sentence.text) > LONG_SENTENCE:
            out += clauses
            out += [
                Span(a.start, b.end, text[a.start : b.end])
                for a, b in zip(clauses, clauses[1:], strict=False)
                if len(clauses) > 2
            ]
        elif len(clauses) == 1 and _size(sentence.text) > LONG_SENTENCE + WINDOW_STRIDE:
            out += _windows(sentence)
    # Short neighbouring sentences often make one act together ("Sorry. That was our fault.").
    out += [
        Span(a.start, b.end, text[a.start : b.end])
        for a, b in zip(sentences, sentences[1:], strict=False)
        if _size(a.text) + _size(b.text) <= 2 * LONG_SENTENCE
    ]
    if len(sentences) > 1:
        out.append(Span(0, len(text), text))
    seen: set[str] = set()
    unique = []
    for span in out:
        if span.text not in seen:
            seen.add(span.text)
            unique.append(span)
    return unique[:MAX_SPANS]


@dataclass(frozen=True, slots=True)
class IntentOptions:
    """How rules match by meaning (the pack's `intents:` section).

    Attributes:
        enabled: Match rules by their examples at all (phrases always match).
        threshold: Classifier score a span needs, for rules with no calibrated `threshold`
            of their own (the classifier is fitted to +1 for the rule, -1 for the rest).
        library: Use the built-in behaviour library's neutral call talk as negatives for
            every rule (and its behaviours where a rule names one).
        veto: Classifier score below which a phrase hit is dropped: when every span
            around the phrase scores below it (a phrase of one or two words is judged by
            the sentence around it, not its bare clause), or when the phrase's clause is
            nearer a counter-example than any example. Also the score a clause of one or
            two words needs on the span around it to count by meaning.
        ridge: Regularisation of the classifiers (larger: smoother, less fitted to the
            examples).
        exclusive: A rule only matches a clause on which no other rule of the same speaker
            scores more than this much higher (None: rules do not compete).
        counter: Cosine similarity to one of the rule's counter-examples from which a span
            that is nearer that counter-example than any example never matches.
        ngrams: Weight of the hashed word and character n-grams beside the embedding in
            the classifiers' features (0: embedding and negation flag only).
        pinyin: Weight of each Chinese text's toneless-pinyin syllable 1-3-grams among its
            n-grams, relative to a character n-gram (0: characters only). The recogniser
            writes homophones (灵岛不再 for 领导不在, 身份正后思维 for 身份证后四位): their
            characters differ, their sounds do not. Off by default: on the tune half and the
            library it traded recall between them rather than adding any (docs/intents.md).
        turn: A clause does not count for a rule when a longer span around it (its
            sentence, the whole turn) reads as another rule, at or above that rule's
            threshold, by more than this much above the clause's own score: a weak reading
            of a part gives way to a clear reading of the whole ("My machine went for repair
            last week and I haven't heard anything since. Can you tell me where it's up
            to?" asks; it does not complain). None: parts are read on their own. 0.25 was
            chosen on the tune half and the library (docs/intents.md).
        kernel: Weight of a Gaussian (RBF) kernel on the embeddings beside the linear
            features: the classifiers are fitted as kernel ridge regression over every text of
            the pack and library, so a rule can own a pocket of meaning that no hyperplane
            separates (0: linear only). Scores of texts far from every training text shrink
            towards the bias, so the threshold that suits it is lower (docs/intents.md,
            "Round 3").
        gamma: Width of that kernel: `exp(gamma * (cosine - 1))` between two texts.
        forbidden_threshold: The default threshold of forbidden rules (None: `threshold`):
            a forbidden hit costs a good agent points, a missed step or category less.
    """

    enabled: bool = True
    threshold: float = -0.05
    library: bool = True
    veto: float = 0.1
    ridge: float = 0.25
    exclusive: float | None = 0.0
    counter: float = 0.8
    ngrams: float = 0.7
    pinyin: float = 0.0
    turn: float | None = 0.25
    kernel: float = 1.0
    gamma: float = 2.0
    forbidden_threshold: float | None = 0.05


@dataclass(frozen=True, slots=True)
class IntentRule:
    """One rule's intent: what counts, what must not, and from what score.

    Attributes:
        rule_id: The rule.
        examples: Utterances that count (the rule's phrases are added to them).
        counter_examples: Near misses that must not count.
        threshold: Its calibrated threshold (None: the pack's default).
        behaviour: A behaviour of the built-in library whose examples count too.
        forbidden: A forbidden rule (its default threshold is `forbidden_threshold`).
    """

    rule_id: str
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...] = ()
    threshold: float | None = None
    behaviour: str | None = None
    forbidden: bool = False


@dataclass(frozen=True, slots=True)
class IntentScore:
    """How one rule scored on the best span of a text.

    Attributes:
        rule_id: The rule.
        score: The rule's classifier score on the span (about -1 to 1; higher is surer).
        example: The nearest example (by cosine similarity) of the span's polarity.
        similarity: Cosine similarity of the span to that example.
        counter_example: The nearest counter-example of the span's polarity ('' when none).
        counter: Its cosine similarity (0 when none).
        span: The span of the text it was measured on.
        threshold: The rule's threshold.
        matched: Whether it counts as a hit (threshold and polarity passed).
        clear: Whether it passed the polarity and counter-example checks (so it is a hit
            from any threshold up to `score`: what calibration varies).
        countered: Whether the span is (nearly) one of the rule's counter-examples.
    """

    rule_id: str
    score: float
    example: str
    similarity: float
    counter_example: str
    counter: float
    span: Span
    threshold: float
    matched: bool
    clear: bool = True
    countered: bool = False


@dataclass(frozen=True, slots=True)
class Library:
    """Built-in examples of standard behaviours, and neutral call talk (negatives for all)."""

    behaviours: dict[str, tuple[str, ...]]
    neutral: tuple[str, ...]


#: Buckets of the hashed word and character n-grams.
NGRAM_DIM = 1024
#: Version of the features and the fit (part of the fitted-weights cache key).
FEATURES = "use+ngrams+pinyin+rbf-v7"


def _grams(text: str) -> list[str]:
    """Word uni- and bigrams, and character 2-4-grams of each word (for Chinese, of each run
    of characters): the surface cues a sentence encoder smooths away. 您 counts as 你: the
    recogniser writes either for the polite "you" (and packs are written with 您)."""
    norm = normalize(text).replace("您", "你")
    words = norm.split()
    out = [f"w:{w}" for w in words]
    out += [f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    for word in words:
        padded = f"<{word}>"
        for n in (2, 3, 4):
            out += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return out


def _sounds(text: str) -> list[str]:
    """Toneless-pinyin syllable 1-3-grams of each run of Chinese characters, with the
    matcher's folding (zh/z, ch/c, sh/s, -ng/-n: the recogniser and southern speech blur
    them), so a homophone the recogniser wrote reads like the word that was said. Off by
    default (`IntentOptions.pinyin`): measured, it did not generalise (docs/intents.md)."""
    from qa.rules.matcher import _syllable  # one cached syllable table for both

    out: list[str] = []
    for run in _CJK_RUN.findall(normalize(text).replace("您", "你")):
        syl = [_syllable(ch) for ch in run]
        out += [f"p:{s}" for s in syl]
        syl = ["<", *syl, ">"]
        for n in (2, 3):
            out += ["p:" + " ".join(syl[i : i + n]) for i in range(len(syl) - n + 1)]
    return out


_CJK_RUN = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\uf900-\ufaff]+")


@functools.lru_cache(maxsize=8192)
def _buckets(text: str, dim: int, pinyin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A text's n-grams (and, weighted `pinyin`, its syllable n-grams) hashed (CRC-32: the
    same in every process) into `dim` signed buckets, L2-normalised: (bucket indices,
    values). Cached like `is_negated`. Each gram adds +weight to bucket `crc32 % dim` when
    the CRC's top bit is set, else -weight; without pinyin (the default) the loop is
    compiled (`qa._native.ngrams`, 10 times faster than in Python, the same values)."""
    if not pinyin:
        return signed_buckets(set(_grams(text)), dim)
    row = np.zeros(dim, dtype=np.float32)
    for grams, weight in ((set(_grams(text)), 1.0), (set(_sounds(text)), pinyin)):
        for gram in grams:
            h = zlib.crc32(gram.encode("utf-8"))
            row[h % dim] += weight if (h >> 31) & 1 else -weight
    norm = float(np.linalg.norm(row))
    if norm > 0:
        row /= norm
    index = np.flatnonzero(row)
    return index, row[index]


def _hashed(texts: Sequence[str], dim: int, pinyin: float = 0.0) -> np.ndarray:
    """Each text's hashed n-grams (`_buckets`), one row per text."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        index, values = _buckets(text, dim, pinyin)
        out[row, index] = values
    return out


def _features(vectors: np.ndarray, negated: np.ndarray, texts: Sequence[str] = (),
              ngrams: float = 0.0, pinyin: float = 0.0) -> np.ndarray:
    """Embedding, hashed n-grams, a negation flag and a bias column: what the classifiers
    read."""
    extra = NGRAM_DIM if ngrams else 0
    d = vectors.shape[1]
    out = np.empty((len(vectors), d + extra + 2), dtype=np.float32)
    out[:, :d] = vectors
    if extra:
        out[:, d : d + extra] = ngrams * _hashed(texts, extra, pinyin)
    out[:, -2] = np.where(negated, 0.5, -0.5)
    out[:, -1] = 1.0
    return out


class IntentMatcher:
    """The intents of a pack's rules, fitted once; `analyse` scores one text.

    Thread-safe after construction (the encoder serialises its own use).

    Args:
        rules: The rules that have examples (or a library behaviour).
        encoder: Anything with `encode(texts) -> (n, d) unit vectors` (a `SentenceEncoder`).
        options: Thresholds and regularisation.
        library: The built-in behaviour library for the pack's language (None: none).
    """

    def __init__(
        self,
        rules: Sequence[IntentRule],
        encoder,
        options: IntentOptions,
        library: Library | None = None,
    ) -> None:
        self.options = options
        self.encoder = encoder
        library = library if options.library else None
        positives: list[tuple[str, ...]] = []
        kept = []
        for rule in rules:
            extra = library.behaviours.get(rule.behaviour, ()) if library and rule.behaviour else ()
            own = tuple(dict.fromkeys((*rule.examples, *extra)))
            if own:
                kept.append(rule)
                positives.append(own)
        self.rules = tuple(kept)
        neutral = library.neutral if library is not None else ()
        # One table of every text: positives of each rule, counter-examples, neutral talk.
        texts: list[str] = []
        owner: list[int] = []  # rule index, or -1 for neutral talk
        counter: list[bool] = []
        for i, rule in enumerate(self.rules):
            for text in positives[i]:
                texts.append(text)
                owner.append(i)
                counter.append(False)
            for text in rule.counter_examples:
                texts.append(text)
                owner.append(i)
                counter.append(True)
        for text in neutral:
            texts.append(text)
            owner.append(-1)
            counter.append(True)
        self._texts = tuple(texts)
        self._owner = np.asarray(owner, dtype=np.int64)
        self._counter = np.asarray(counter, dtype=bool)
        self._negated = np.asarray([is_negated(t) for t in texts], dtype=bool)
        if not texts:
            vectors = np.zeros((0, 512), dtype=np.float32)
        elif hasattr(encoder, "directory"):
            from qa.rules.encoder import encode_cached

            vectors = encode_cached(encoder, texts)
        else:
            vectors = encoder.encode(texts)
        self._unit = vectors.T.copy()  # (d, texts) for cosine similarity
        self._weights = self._fitted(vectors, cache=hasattr(encoder, "directory"))
        self._index = {r.rule_id: i for i, r in enumerate(self.rules)}
        self._thresholds = np.asarray([
            r.threshold if r.threshold is not None
            else options.forbidden_threshold if r.forbidden and
            options.forbidden_threshold is not None
            else options.threshold
            for r in self.rules
        ])
        # A rule matches only spans of a polarity that some of its examples have.
        self._polarities = [
            {bool(x) for x in self._negated[(self._owner == i) & ~self._counter]}
            for i in range(len(self.rules))
        ]
        # Per rule and span polarity, where its examples and counter-examples sit in the
        # table (`_score` runs for every rule on every span: the masks are made once here).
        self._nearest: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}
        for i in range(len(self.rules)):
            rule = self._owner == i
            for negated in (False, True):
                mine = rule & (self._negated == negated)
                pos = np.flatnonzero(mine & ~self._counter)
                if not len(pos):
                    pos = np.flatnonzero(rule & ~self._counter)
                self._nearest[i, negated] = (pos, np.flatnonzero(mine & self._counter))

    def _fitted(self, vectors: np.ndarray, cache: bool) -> np.ndarray:
        """The classifiers' weights: fitted, or read back from the disk cache when the same
        texts, roles, embeddings and options were fitted before (a pack loads in a fraction of
        a second after its first load)."""
        if not cache:
            return self._fit(_features(vectors, self._negated, self._texts, self.options.ngrams,
                                       self.options.pinyin), vectors)
        import hashlib
        import os
        import tempfile

        from qa.rules.encoder import _cache_dir

        digest = hashlib.sha256()
        digest.update(f"{FEATURES}:{NGRAM_DIM}:{self.options.ngrams}:{self.options.pinyin}:"
                      f"{self.options.kernel}:{self.options.gamma}:"
                      f"{self.options.ridge}:"
                      f"{len(self.rules)}".encode())
        for text, owner, counter in zip(self._texts, self._owner, self._counter, strict=True):
            digest.update(f"{owner}:{int(counter)}:{text}\0".encode())
        digest.update(np.ascontiguousarray(vectors).tobytes())
        path = _cache_dir() / f"fit-{digest.hexdigest()[:32]}.npy"
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (vectors.shape[1] + NGRAM_DIM * bool(self.options.ngrams) + 2
                                + len(vectors) * bool(self.options.kernel), len(self.rules)):
                return cached
        except (OSError, ValueError):
            pass
        weights = self._fit(_features(vectors, self._negated, self._texts, self.options.ngrams,
                                       self.options.pinyin), vectors)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, weights, allow_pickle=False)
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("fitted weights not cached: %s", exc)
        return weights

    def _fit(self, features: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """One weighted ridge classifier per rule: +1 for its examples, -1 for the rest.

        A rule's counter-examples and the neutral talk count against it; so do the other
        rules' examples, except where both rules share a text. Positives are weighted up to
        the negatives' total, so a rule with ten examples is not drowned by a thousand
        negatives. Every rule's system is the same Gram matrix of all texts plus a low-rank
        change (its positives weighted up, its shared texts left out), so one inverse serves
        all rules (Woodbury identity): fitting stays fast with thousands of features.
        """
        if self.options.kernel and vectors is not None and len(vectors):
            return self._fit_kernel(features, vectors)
        n_rules = len(self.rules)
        d = features.shape[1]
        weights = np.zeros((d, n_rules), dtype=np.float64)
        ridge = 2.0 * self.options.ridge * np.eye(d)
        ridge[-1, -1] = 0.0  # the bias is not shrunk
        base = np.linalg.inv((features.T @ features).astype(np.float64) + ridge)
        x = features.astype(np.float64)
        total = x.sum(axis=0)
        for i in range(n_rules):
            positive, shared, rho = self._weighting(i)
            n_pos = int(positive.sum())
            # A = base⁻¹ + Uᵀ C U: positives weigh rho (not 1), shared texts 0 (not 1).
            u = np.concatenate([x[positive], x[shared]])
            c = np.concatenate([np.full(n_pos, rho - 1.0), np.full(int(shared.sum()), -1.0)])
            rhs = -total + (1.0 + rho) * x[positive].sum(axis=0) + x[shared].sum(axis=0)
            keep = c != 0
            u, c = u[keep], c[keep]
            first = base @ rhs
            if len(u):
                bu = base @ u.T
                inner = np.diag(1.0 / c) + u @ bu
                first -= bu @ np.linalg.solve(inner, u @ first)
            weights[:, i] = first
        return weights.astype(np.float32)

    def _weighting(self, i: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Rule `i`'s texts for both fits: its positives, the other texts that repeat one of
        them (left out), and the weight of a positive (the negatives' total over theirs)."""
        positive = (self._owner == i) & ~self._counter
        own_texts = {self._texts[j] for j in np.flatnonzero(positive)}
        shared = ~positive & np.asarray([t in own_texts for t in self._texts])
        n_pos = int(positive.sum())
        n_neg = len(self._texts) - n_pos - int(shared.sum())
        return positive, shared, max(1, n_neg) / max(1, n_pos)  # no negatives still fits

    #: Scale of the bias column in the dual fit (its penalty is `ridge / BIAS**2`: nearly
    #: unpenalised, as in the primal fit).
    BIAS = 10.0

    def _kernel(self, sims: np.ndarray) -> np.ndarray:
        """The RBF kernel of unit vectors from their cosine similarities."""
        return np.exp(self.options.gamma * (sims - 1.0))

    def _fit_kernel(self, features: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """The same weighted ridge per rule, in its dual form, with an RBF kernel on the
        embeddings added (weight `kernel`) to the linear features' kernel.

        Returns the linear part's primal weights stacked over the kernel's coefficients per
        text: (features + texts, rules). The dual, because the kernel's feature space has no
        finite basis; it has as many unknowns as texts (about 1,500), as the primal had
        features, so fitting costs the same. A span's score is then its features times the
        primal weights plus its kernel row (from the cosines the nearest-example check
        computes anyway) times the coefficients.
        """
        n_rules = len(self.rules)
        x = features.astype(np.float64)
        x[:, -1] = self.BIAS
        v = vectors.astype(np.float64)
        gram = x @ x.T + self.options.kernel * self._kernel(v @ v.T)
        lam = 2.0 * self.options.ridge
        n = len(x)
        base = np.linalg.inv(gram + lam * np.eye(n))
        alphas = np.zeros((n, n_rules))
        for i in range(n_rules):
            positive, shared, rho = self._weighting(i)
            n_pos = int(positive.sum())
            y = np.where(positive, 1.0, -1.0)
            y[shared] = 0.0
            # (K + lam W^-1) alpha = y; W is 1 but rho on positives and 0 on shared texts:
            # a diagonal change on those rows, by Woodbury (1/c = 0 removes a row exactly).
            idx = np.concatenate([np.flatnonzero(positive), np.flatnonzero(shared)])
            inv_c = np.concatenate([
                np.full(n_pos, 1.0 / (lam * (1.0 / rho - 1.0)) if rho != 1.0 else np.inf),
                np.zeros(int(shared.sum())),
            ])
            keep = np.isfinite(inv_c)
            idx, inv_c = idx[keep], inv_c[keep]
            first = base @ y
            if len(idx):
                inner = np.diag(inv_c) + base[np.ix_(idx, idx)]
                first -= base[:, idx] @ np.linalg.solve(inner, first[idx])
            first[shared] = 0.0
            alphas[:, i] = first
        weights = x.T @ alphas
        weights[-1] *= self.BIAS
        return np.concatenate([weights, self.options.kernel * alphas]).astype(np.float32)

    def __len__(self) -> int:
        return len(self._texts)

    def threshold(self, rule_id: str) -> float:
        """The threshold in force for a rule."""
        return float(self._thresholds[self._index[rule_id]])

    #: Texts whose rows `_scores` keeps (a few segments' spans; emptied when full).
    SCORED = 64

    def _scores(
        self, texts: Sequence[str], also: Sequence[str] = ()
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # All spans in one encoder batch, with `also` (the other spans of the segment): one
        # pass per segment, not one per phrase checked. Their rows (scores, similarities,
        # negation) are kept, so the intents after a phrase hit's veto find them instead of
        # multiplying again (the similarity product streams the whole table of texts). The
        # products run on the encoder's BLAS threads too (one by default: OpenBLAS's own
        # threads cost more than they save on products this small).
        kept = self.__dict__.setdefault("_scored", {})
        rows = {t: kept.get(t) for t in texts}
        todo = [t for t, row in rows.items() if row is None]
        if todo:
            todo += [t for t in dict.fromkeys(also) if t not in rows]
            with getattr(self.encoder, "blas", nullcontext)():
                vectors = self.encoder.encode(todo)
                negated = np.asarray([is_negated(t) for t in todo], dtype=bool)
                feats = _features(vectors, negated, todo, self.options.ngrams,
                                  self.options.pinyin)
                sims = vectors @ self._unit
                if self.options.kernel:  # the kernel part reads the same cosines
                    d = feats.shape[1]
                    scores = (feats @ self._weights[:d]
                              + self._kernel(sims) @ self._weights[d:])
                else:
                    scores = feats @ self._weights
            if len(kept) + len(todo) > self.SCORED:
                kept.clear()
            for k, text in enumerate(todo):
                kept[text] = rows[text] = (scores[k], sims[k], bool(negated[k]))
        found = [rows[t] for t in texts]
        return (np.stack([r[0] for r in found]), np.stack([r[1] for r in found]),
                np.asarray([r[2] for r in found], dtype=bool))

    def analyse(
        self, text: str, rule_ids: Sequence[str] | None = None,
        rivals: Sequence[str] | None = None, claimed: Sequence[tuple[int, int]] = (),
    ) -> list[IntentScore]:
        """Scores `text` against every rule (or those named), each on its best span.

        Args:
            text: A segment's text.
            rule_ids: The rules to score (default all).
            rivals: The rules that compete for each clause (default `rule_ids`): those this
                speaker's words can count for, including rules a phrase already matched.
            claimed: Character ranges of `text` that phrase hits of other rules already
                stand on; no intent match may overlap them.

        Returns:
            One `IntentScore` per rule, best first; `matched` says which count as hits.
        """
        cands = spans(text)
        if not cands or not self.rules:
            return []
        scores, sims, negated = self._scores([s.text for s in cands])
        wanted = list(range(len(self.rules))) if rule_ids is None else [
            self._index[r] for r in rule_ids if r in self._index
        ]
        compete = wanted if rivals is None else sorted(
            {self._index[r] for r in rivals if r in self._index} | set(wanted)
        )
        out = []
        # A clause says one thing: a rule only counts on a span where no rival reads it better
        # by more than `exclusive` (a thanks-and-goodbye is a closing, not a greeting).
        if self.options.exclusive is not None and len(compete) > 1:
            top = scores[:, compete].max(axis=1)
        else:
            top = None
        best: dict[int, IntentScore] = {}
        matches: list[tuple[float, int, IntentScore]] = []
        # Per span and rival, its score where it reaches its threshold (`turn`).
        reached = None
        if self.options.turn is not None and len(compete) > 1:
            reached = np.where(scores[:, compete] >= self._thresholds[compete],
                               scores[:, compete], -np.inf)
        # A clause of a word or two inside a longer sentence ("Sorry," in "Sorry, you cut out
        # there", "您好，" in "您好，能听清吗？") is read with its sentence: it only counts
        # when the smallest span around it reads as the act too (at least `veto`).
        sizes = [_size(span.text) for span in cands]
        context = [
            min((c for c, o in enumerate(cands) if c != s and o.start <= span.start
                 and span.end <= o.end and sizes[c] > sizes[s]),
                key=lambda c: sizes[c], default=-1) if sizes[s] <= SHORT_PHRASE else -1
            for s, span in enumerate(cands)
        ]
        for i in wanted:
            turn = None if reached is None else np.delete(
                reached, [c for c, r in enumerate(compete) if r == i], axis=1).max(axis=1)
            verdicts = [self._score(i, span, float(scores[s, i]), sims[s], bool(negated[s]))
                        for s, span in enumerate(cands)]
            for s, span in enumerate(cands):
                cand = verdicts[s]
                if context[s] >= 0 and scores[context[s], i] < self.options.veto:
                    cand = replace(cand, matched=False, clear=False)
                if (top is not None and top[s] - scores[s, i] > self.options.exclusive
                        and cand.score > -1.0):
                    # Another rule reads this clause far better. (A score at -1 or below
                    # stays as it is: no new verdict to make.)
                    score = round(min(cand.score, -1.0), 4)
                    cand = replace(cand, score=score,
                                   matched=cand.clear and score >= cand.threshold)
                # A clause inside a sentence that is one of the rule's counter-examples is
                # that counter-example, however its words read alone.
                if cand.clear and any(
                    v.countered and v.span.start <= span.start and span.end <= v.span.end
                    for v in verdicts
                ):
                    cand = replace(cand, matched=False, clear=False)
                if cand.matched and turn is not None and any(
                    sizes[o] > sizes[s] and other.start <= span.start and span.end <= other.end
                    and turn[o] - cand.score > self.options.turn
                    for o, other in enumerate(cands)
                ):
                    cand = replace(cand, matched=False)
                if cand.matched:
                    matches.append((cand.score, i, cand))
                if i not in best or (cand.clear, cand.score) > (best[i].clear, best[i].score):
                    best[i] = cand
        # One stretch of words is one act: the surest matches claim their spans first, and a
        # rule whose every matching span overlaps a surer rule's does not match.
        taken: list[Span] = [Span(a, b, "") for a, b in claimed]
        won: dict[int, IntentScore] = {}
        for _, i, cand in sorted(matches, key=lambda m: -m[0]):
            if i in won:
                continue
            if any(cand.span.start < t.end and t.start < cand.span.end for t in taken):
                continue
            won[i] = cand
            taken.append(cand.span)
        for i, cand in best.items():
            if i in won:
                out.append(won[i])
            else:
                out.append(replace(cand, matched=False) if cand.matched else cand)
        out.sort(key=lambda x: -x.score)
        return out

    def _score(self, i: int, span: Span, score: float, sims: np.ndarray,
               negated: bool) -> IntentScore:
        pos, neg = self._nearest[i, negated]
        j = pos[int(np.argmax(sims[pos]))]
        k = neg[int(np.argmax(sims[neg]))] if len(neg) else -1
        # Explicit checks on top of the classifier: the span's polarity must be one the rule's
        # examples have, and the span must not be (nearly) one of its counter-examples.
        countered = bool(k >= 0 and sims[k] >= self.options.counter and sims[k] > sims[j])
        clear = negated in self._polarities[i] and not countered
        threshold = float(self._thresholds[i])
        return IntentScore(
            self.rules[i].rule_id, round(score, 4), self._texts[j], round(float(sims[j]), 4),
            self._texts[k] if k >= 0 else "", round(float(sims[k]), 4) if k >= 0 else 0.0,
            span, threshold, clear and score >= threshold, clear, countered,
        )

    def veto(self, text: str, evidence: str, rule_id: str) -> IntentScore | None:
        """Whether a phrase hit of `rule_id` on `evidence` inside `text` should be dropped.

        A phrase can be said without the act: negated around it ("it's not urgent at all"),
        embedded ("I don't know if you've seen our app"), or quoted ("your account number is
        on the bill"). The classifier, which learned the rule's counter-examples and the
        library's near misses, judges the clause the phrase was found in.

        Returns:
            What drops the hit: a span around the phrase that is (nearly) one of the rule's
            counter-examples, or the best span's score when it is below `IntentOptions.veto`;
            None to keep the hit.
        """
        i = self._index.get(rule_id)
        if i is None:
            return None
        at = text.find(evidence) if evidence else -1
        stripped = text.strip()
        offset = text.find(stripped)
        # The spans around the phrase, and its own comma clause even in a short sentence
        # ("In five working days, is there anything else?" closes on its second clause).
        whole = spans(text)
        around = [*whole]
        for sentence in _pieces(stripped, _SENTENCE_END, offset):
            around += _pieces(sentence.text, _CLAUSE_BREAK, sentence.start)
        cands = list({
            (s.start, s.end): s for s in around
            if at < 0 or (s.start <= at and at + len(evidence) <= s.end)
        }.values())
        # A clause that is a short phrase and little else ("您好" in "您好，您还在听吗？",
        # "Sorry, you cut out there") says nothing about whether the act was done; the words
        # around it do. A longer phrase ("is there anything else") carries its act itself.
        if at >= 0 and _size(evidence) <= SHORT_PHRASE:
            wider = [s for s in cands if _size(s.text) > _size(evidence) + 1]
            cands = wider or cands
        if not cands:
            return None
        scores, sims, negated = self._scores([s.text for s in cands], [s.text for s in whole])
        verdicts = [self._score(i, span, float(scores[s, i]), sims[s], bool(negated[s]))
                    for s, span in enumerate(cands)]
        # The phrase is dropped when a span around it is one of the rule's counter-examples,
        # or when no span around it reads as the act.
        countered = next((v for v in verdicts if v.countered), None)
        if countered is not None:
            return countered
        # A phrase negated by the words around it ("You won't need to call back later",
        # 没有投诉的意思) is not the act unless the classifier reads its clause as the act.
        if at >= 0 and not is_negated(evidence):
            clause = min(verdicts, key=lambda v: v.span.end - v.span.start)
            if is_negated(clause.span.text) and clause.score < float(self._thresholds[i]):
                return clause
        best = max(verdicts, key=lambda v: v.score)
        return best if best.score < self.options.veto else None
