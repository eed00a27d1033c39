"""The rules engine: rule packs, phrase matching, the per-call state machine, scoring."""

from qa.rules.engine import CallRules, build_matcher
from qa.rules.matcher import MatchKind, MatchOptions, Phrase, PhraseHit, PhraseMatcher
from qa.rules.normalize import NormalizedText, normalize, normalize_with_map
from qa.rules.schema import RulePack, load_pack, loads_pack
from qa.rules.scoring import band, score

__all__ = [
    "CallRules",
    "MatchKind",
    "MatchOptions",
    "NormalizedText",
    "Phrase",
    "PhraseHit",
    "PhraseMatcher",
    "RulePack",
    "band",
    "build_matcher",
    "load_pack",
    "loads_pack",
    "normalize",
    "normalize_with_map",
    "score",
]
