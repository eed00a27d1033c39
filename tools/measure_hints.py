#!/usr/bin/env python3
"""Measures whether recogniser hints from a rule pack help: issue 9, item 6.

For each language the example pack (`examples/rules/{en,zh}_support.yaml`) gives the hints:

- `hotwords`: the phrases of its greeting, identity check, apology and closing steps, joined
  by commas (faster-whisper's `hotwords`), at most `HINT_TOKENS` tokens;
- `hotwords_spaced` (Mandarin only): the same phrases separated by spaces instead of `，`
  (with `，` the model wrote stray full-width letters and repeated itself);
- `prompt`: a short in-domain text of the first two phrases of each of those steps, one
  sentence per step (faster-whisper's `initial_prompt`);
- `none`: no hint, the service as it is (run twice, `none` and `none2`: the difference
  between the two runs is the measurement's noise).

faster-whisper feeds both kinds the same way to the decoder: `<|startofprev|>`, the hint's
tokens, then the usual start sequence (`WhisperModel.get_prompt`); for an utterance shorter
than Whisper's 30 s window, `initial_prompt` and `hotwords` differ only in their text. The
service decodes through `qa.batching.BatchTranscriber`, which calls CTranslate2 directly, so
this tool puts the hint in front of every prompt at that one call (`HintedModel`), which
reaches the batched and the per-utterance path alike, with the service's decoding options
unchanged (beam 5, fallback temperatures 0 and 0.4, the pack's language, no Whisper VAD: the
front end gates speech).

Per condition and language it runs the real `base` model over:
1. the shared clips (`/work/shared/audio`, 16 kHz and the 8 kHz telephone copies) through
   the front end and the batched transcriber, scored with `qa.textnorm` (WER for English,
   CER for Chinese, numerals normalised on the digits clip), pooled over clips;
2. the rendered calls (`tests/data/rendered/*.wav`) through the service (`Monitor` with the
   pack, as `tests/scenarios/test_rendered_calls.py` replays them): steps found against
   expected, forbidden hits against expected, extra hits, categories, the 60 exact checks,
   and the WER/CER of each channel against its script;
3. four 5-second non-speech signals (digital silence, 1-LSB dither, white noise at -50 and
   -30 dBFS) straight into the transcriber, bypassing the front end's VAD: anything that
   comes back is text Whisper made up (the prompt's known failure).
It also times the decoder (wall seconds inside CTranslate2's `generate`, and process CPU
seconds for the clips).

Results are cached per (condition, language, part) in a JSON file, so a run interrupted
half-way resumes where it stopped; `--report` prints the tables from the cache.

Usage (from the repository root, with the project's virtual environment):
    PYTHONPATH=$PWD nice -n 5 .venv/bin/python tools/measure_hints.py \
        --cache /tmp/qa-hints.json
    PYTHONPATH=$PWD .venv/bin/python tools/measure_hints.py --cache /tmp/qa-hints.json --report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
RENDERED = REPO / "tests" / "data" / "rendered"
PACKS = {lang: REPO / "examples" / "rules" / f"{lang}_support.yaml" for lang in ("en", "zh")}
SHARED = Path(os.environ.get("QA_SHARED_AUDIO", "/work/shared/audio"))
CONDITIONS = ("none", "hotwords", "hotwords_spaced", "prompt", "none2")
PARTS = ("clips", "calls", "noise")
#: The pack's steps whose phrases make the hints (the issue's "key phrases").
KEY_BEHAVIOURS = ("greeting", "identity_check", "apology", "closing")
#: Hint length bound. faster-whisper cuts hotwords at 223 tokens (half of Whisper's 448-token
#: context); a shorter hint leaves the rest of the context to the transcript and costs less.
HINT_TOKENS = 160
#: Whisper's decoder context, prompt included.
MAX_LENGTH = 448
RATE = 16_000

log = logging.getLogger("qa.tools.measure_hints")


# -- the hints -------------------------------------------------------------------------------


def key_phrases(pack) -> list[list[str]]:
    """The phrases of the pack's key steps, one list per step, in pack order."""
    return [list(s.phrases) for s in pack.steps if s.behaviour in KEY_BEHAVIOURS and s.phrases]


def hotwords_text(pack, spaced: bool = False) -> str:
    sep = "，" if pack.language == "zh" else ", "
    if spaced and pack.language == "zh":
        sep = " "
    return sep.join(p for phrases in key_phrases(pack) for p in phrases)


def prompt_text(pack) -> str:
    if pack.language == "zh":
        return "".join("，".join(phrases[:2]) + "。" for phrases in key_phrases(pack))
    sentences = []
    for phrases in key_phrases(pack):
        sentence = ", ".join(phrases[:2])
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
    return " ".join(sentences)


def hint_text(condition: str, pack) -> str:
    if condition in ("hotwords", "hotwords_spaced"):
        return hotwords_text(pack, spaced=condition == "hotwords_spaced")
    if condition == "prompt":
        return prompt_text(pack)
    return ""


def hint_tokens(whisper, text: str) -> list[int]:
    """`<|startofprev|>` and the hint's tokens, as faster-whisper's `get_prompt` builds them."""
    if not text:
        return []
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual,
                          task="transcribe", language="en")
    tokens = tokenizer.encode(" " + text.strip())
    if len(tokens) > HINT_TOKENS:
        raise SystemExit(f"hint is {len(tokens)} tokens (> {HINT_TOKENS}): {text!r}")
    return [tokenizer.sot_prev, *tokens]


class HintedModel:
    """The CTranslate2 Whisper model with `hint` put in front of every decoder prompt.

    Everything else is the model's own; `generate` is also timed."""

    def __init__(self, model, hint: list[int]) -> None:
        self._model = model
        self._hint = hint
        self.generate_s = 0.0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, features, prompts, *, max_length=MAX_LENGTH, **kwargs):
        if self._hint:
            prompts = [self._hint + list(p) for p in prompts]
            max_length = min(MAX_LENGTH, max_length + len(self._hint))
        start = time.perf_counter()
        try:
            return self._model.generate(features, prompts, max_length=max_length, **kwargs)
        finally:
            self.generate_s += time.perf_counter() - start


# -- the measurements ------------------------------------------------------------------------


def _clips(language: str) -> list[tuple[str, Path, dict]]:
    refs = json.loads((SHARED / "references.json").read_text(encoding="utf-8"))
    out = []
    for name, ref in sorted(refs.items()):
        if ref["lang"] != language:
            continue
        stem = re.sub(r"_16k_(mono|s16)$", "", Path(name).stem)
        out.append((stem, SHARED / name, ref))
        out.append((stem + " 8k", SHARED / "8k" / f"{stem}_8k_ulaw.wav", ref))
    return out


def measure_clips(batcher, language: str) -> dict:
    from qa import textnorm
    from qa.offline import transcribe_file
    from qa.types import Speaker

    rows = {}
    cpu = time.process_time()
    for label, path, ref in _clips(language):
        segments = transcribe_file(path, batcher, language=language)
        numerals = "digits" in label
        channels = ([("L", Speaker.AGENT, ref["channels"]["left"]),
                     ("R", Speaker.CUSTOMER, ref["channels"]["right"])]
                    if "channels" in ref else [("", None, ref["text"])])
        for suffix, speaker, reference in channels:
            text = " ".join(s.text for s in segments if speaker is None or s.speaker == speaker)
            if language == "zh":
                n = len(textnorm.chinese_chars(reference))
            else:
                n = len(textnorm.english_words(reference, numerals=numerals))
            rows[f"{label} {suffix}".strip()] = {
                "error": textnorm.score(language, reference, text, numerals=numerals),
                "tokens": n, "text": text,
            }
    return {"rows": rows, "cpu_s": time.process_time() - cpu}


def _script(name: str) -> dict:
    return yaml.safe_load((RENDERED / f"{name}.yaml").read_text(encoding="utf-8"))


def _expected(script: dict) -> dict:
    exp = script["expected"]
    out = {
        "done": sorted(exp.get("done") or []),
        "missed": sorted(exp.get("missed") or []),
        "forbidden": dict(sorted((exp.get("forbidden") or {}).items())),
        "category": exp.get("category"),
    }
    if "score" in exp:
        out["score"] = float(exp["score"])
    return out


def measure_calls(transcriber, language: str) -> dict:
    from qa import textnorm
    from qa.commands.backtest import run_backtest
    from qa.commands.score import CallResults
    from qa.monitor import Monitor, MonitorOptions
    from qa.types import EventKind

    class Results(CallResults):
        def __init__(self) -> None:
            super().__init__()
            self.segments: dict[str, list] = {}

        def segment(self, segment, latency) -> None:
            with self._lock:
                self.segments.setdefault(segment.call_id, []).append(segment)

    names = sorted(p.stem for p in RENDERED.glob(f"{language}_*.yaml"))
    results = Results()
    with Monitor(MonitorOptions(rules=PACKS[language]), [results],
                 transcriber=transcriber) as monitor:
        outcomes = run_backtest(monitor, results, [RENDERED / f"{n}.wav" for n in names])
    calls = {}
    for name, outcome in zip(names, outcomes, strict=True):
        events = results.events.get(outcome.call_id, [])
        script = _script(name)
        got = {
            "done": sorted({e.rule_id for e in events
                            if e.kind == EventKind.STEP_DONE and e.points > 0}),
            "missed": sorted({e.rule_id for e in events if e.kind == EventKind.STEP_MISSED}),
            "forbidden": dict(sorted(Counter(
                e.rule_id for e in events if e.kind == EventKind.FORBIDDEN_PHRASE).items())),
            "category": results.summaries[outcome.call_id].category,
            "score": float(outcome.total),
        }
        transcript = {}
        for speaker in ("agent", "customer"):
            reference = " ".join(t["text"] for t in script["turns"] if t["speaker"] == speaker)
            segs = sorted((s for s in results.segments.get(outcome.call_id, [])
                           if s.speaker == speaker), key=lambda s: s.start)
            text = " ".join(s.text for s in segs)
            n = (len(textnorm.chinese_chars(reference)) if language == "zh"
                 else len(textnorm.english_words(reference, numerals=True)))
            transcript[speaker] = {
                "error": textnorm.score(language, reference, text, numerals=True),
                "tokens": n, "text": text,
            }
        calls[name] = {"got": got, "expected": _expected(script), "transcript": transcript}
    return calls


def noise_signals(seed: int = 9) -> dict[str, np.ndarray]:
    """Five seconds each of what a line carries between words, as int16 at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = 5 * RATE
    full = 32767.0

    def white(dbfs: float) -> np.ndarray:
        return np.clip(rng.normal(0, full * 10 ** (dbfs / 20), n), -32768, 32767)

    return {
        "silence": np.zeros(n),
        "dither": rng.integers(-1, 2, n).astype(float),
        "white -50 dBFS": white(-50),
        "white -30 dBFS": white(-30),
    }


def measure_noise(batcher, language: str) -> dict:
    from qa.types import Speaker, Utterance

    out = {}
    for i, (label, signal) in enumerate(noise_signals().items()):
        pcm = signal.astype(np.int16)
        pcm.flags.writeable = False
        utterance = Utterance("noise", Speaker.AGENT, 0, len(pcm), pcm, index=i)
        out[label] = " ".join(s.text for s in batcher.transcribe(utterance, language))
    return out


# -- the run and the report ------------------------------------------------------------------


def _load(cache: Path) -> dict:
    return json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}


def _save(cache: Path, data: dict) -> None:
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(cache)


def run(cache: Path, conditions: list[str], languages: list[str], parts: list[str]) -> None:
    from qa.asr import Transcriber, TranscriberOptions
    from qa.batching import BatchTranscriber
    from qa.rules import load_pack

    data = _load(cache)
    transcriber = None
    for condition in conditions:
        for language in languages:
            if condition == "hotwords_spaced" and language != "zh":
                continue  # English hotwords are separated by ", " already
            pack = load_pack(PACKS[language])
            todo = [p for p in parts if p not in data.get(condition, {}).get(language, {})]
            if not todo:
                continue
            if transcriber is None:
                # The service's options (beam 5, temperatures 0 and 0.4, int8, 2 threads).
                transcriber = Transcriber(TranscriberOptions())
                real = transcriber.whisper.model
            text = hint_text(condition, pack)
            for part in todo:
                hinted = HintedModel(real, hint_tokens(transcriber.whisper, text))
                transcriber.whisper.model = hinted
                # Per language, as the service runs one language per pack.
                transcriber.options = TranscriberOptions(language=language)
                start = time.perf_counter()
                if part == "clips":
                    result = measure_clips(BatchTranscriber(transcriber), language)
                elif part == "calls":
                    result = {"calls": measure_calls(transcriber, language)}
                else:
                    result = {"texts": measure_noise(BatchTranscriber(transcriber), language)}
                result["wall_s"] = time.perf_counter() - start
                result["generate_s"] = hinted.generate_s
                result["hint"] = text
                result["hint_tokens"] = max(0, len(hinted._hint) - 1)
                data.setdefault(condition, {}).setdefault(language, {})[part] = result
                _save(cache, data)
                log.warning("%s %s %s: %.0f s", condition, language, part, result["wall_s"])
            transcriber.whisper.model = real


def _pooled(rows: dict) -> float:
    total = sum(r["tokens"] for r in rows.values())
    return sum(r["error"] * r["tokens"] for r in rows.values()) / total


def _rule_counts(calls: dict) -> dict:
    out = Counter()
    for call in calls.values():
        got, exp = call["got"], call["expected"]
        out["steps_expected"] += len(exp["done"])
        out["steps_found"] += len(set(got["done"]) & set(exp["done"]))
        out["steps_extra"] += len(set(got["done"]) - set(exp["done"]))
        out["forbidden_expected"] += sum(exp["forbidden"].values())
        out["forbidden_found"] += sum(min(n, got["forbidden"].get(r, 0))
                                      for r, n in exp["forbidden"].items())
        out["forbidden_extra"] += sum(max(0, n - exp["forbidden"].get(r, 0))
                                      for r, n in got["forbidden"].items())
        out["category_ok"] += got["category"] == exp["category"]
        out["calls"] += 1
        out["checks_held"] += sum(got[f] == exp[f] for f in exp)
        out["checks"] += len(exp)
    return out


def report(data: dict) -> str:
    lines = ["| condition | lang | clips WER/CER | calls WER/CER | steps found | forbidden found "
             "| extra hits | category | checks held | clips CPU s (ratio) | generate s (ratio) "
             "| non-speech text |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for language in ("en", "zh"):
        base_cost = base_cpu = None
        for condition in CONDITIONS:
            parts = data.get(condition, {}).get(language, {})
            if not all(p in parts for p in PARTS):
                continue
            clips, calls = parts["clips"], parts["calls"]["calls"]
            c = _rule_counts(calls)
            call_rows = {f"{n} {s}": t for n, call in calls.items()
                         for s, t in call["transcript"].items()}
            cost = parts["clips"]["generate_s"] + parts["calls"]["generate_s"]
            cpu = clips["cpu_s"]
            if condition == "none":
                base_cost, base_cpu = cost, cpu
            ratio = f"{cost / base_cost:.2f}" if base_cost else "-"
            cpu_ratio = f"{cpu / base_cpu:.2f}" if base_cpu else "-"
            made_up = sum(bool(t) for t in parts["noise"]["texts"].values())
            lines.append(
                f"| {condition} | {language} | {_pooled(clips['rows']):.3f} "
                f"| {_pooled(call_rows):.3f} "
                f"| {c['steps_found']}/{c['steps_expected']} "
                f"| {c['forbidden_found']}/{c['forbidden_expected']} "
                f"| {c['steps_extra'] + c['forbidden_extra']} "
                f"| {c['category_ok']}/{c['calls']} | {c['checks_held']}/{c['checks']} "
                f"| {cpu:.0f} ({cpu_ratio}) | {cost:.0f} ({ratio}) "
                f"| {made_up}/{len(parts['noise']['texts'])} |")
    return "\n".join(lines)


def details(data: dict) -> str:
    """What changed per call and per clip between each condition and `none`."""
    out = []
    for language in ("en", "zh"):
        base = data.get("none", {}).get(language, {})
        for condition in CONDITIONS[1:]:
            parts = data.get(condition, {}).get(language, {})
            if not all(p in parts for p in PARTS) or not all(p in base for p in PARTS):
                continue
            out.append(f"## {condition} vs none, {language}: hint {parts['clips']['hint']!r} "
                       f"({parts['clips']['hint_tokens']} tokens)")
            for label, row in parts["clips"]["rows"].items():
                was = base["clips"]["rows"][label]
                if row["text"] != was["text"]:
                    out.append(f"  clip {label}: {was['error']:.3f} -> {row['error']:.3f}"
                               f"\n    none: {was['text']}\n    this: {row['text']}")
            for name, call in parts["calls"]["calls"].items():
                was = base["calls"]["calls"][name]
                for field in call["expected"]:
                    if call["got"][field] != was["got"][field]:
                        out.append(f"  call {name} {field}: {was['got'][field]} -> "
                                   f"{call['got'][field]} (expected {call['expected'][field]})")
            for label, text in parts["noise"]["texts"].items():
                if text:
                    out.append(f"  non-speech {label}: {text!r}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/qa-hints.json"))
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--languages", default="en,zh")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--report", action="store_true", help="only print the cached results")
    parser.add_argument("--details", action="store_true", help="also print what changed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if not args.report:
        run(args.cache, args.conditions.split(","), args.languages.split(","),
            args.parts.split(","))
    data = _load(args.cache)
    print(report(data))
    if args.details:
        print(details(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
