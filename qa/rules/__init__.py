"""The rules engine: rule packs, phrase and intent matching, the per-call state machine,
scoring."""

from qa.rules.detect import RuleDetector, build_intents, build_matcher
from qa.rules.engine import CallRules
from qa.rules.intents import IntentMatcher, IntentOptions, IntentScore
from qa.rules.matcher import MatchKind, MatchOptions, Phrase, PhraseHit, PhraseMatcher
from qa.rules.normalize import NormalizedText, normalize, normalize_with_map
from qa.rules.schema import RulePack, load_pack, loads_pack
from qa.rules.scoring import band, score

__all__ = [
    "CallRules",
    "IntentMatcher",
    "IntentOptions",
    "IntentScore",
    "MatchKind",
    "MatchOptions",
    "NormalizedText",
    "Phrase",
    "PhraseHit",
    "PhraseMatcher",
    "RuleDetector",
    "RulePack",
    "band",
    "build_intents",
    "build_matcher",
    "load_pack",
    "loads_pack",
    "normalize",
    "normalize_with_map",
    "score",
]
