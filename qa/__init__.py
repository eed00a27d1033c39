"""Real-time speech QA and monitoring for call centres."""

from qa.errors import (
    AudioFileError,
    ConfigError,
    DependencyError,
    ModelError,
    QAError,
    RuleFileError,
    SourceError,
)
from qa.types import (
    SAMPLE_RATE,
    AudioChunk,
    Event,
    EventKind,
    Scorecard,
    ScoreItem,
    Segment,
    Severity,
    Speaker,
    Utterance,
    Word,
)

__version__ = "0.1.0"

__all__ = [
    "SAMPLE_RATE",
    "AudioChunk",
    "AudioFileError",
    "ConfigError",
    "DependencyError",
    "Event",
    "EventKind",
    "ModelError",
    "QAError",
    "RuleFileError",
    "ScoreItem",
    "Scorecard",
    "Segment",
    "Severity",
    "SourceError",
    "Speaker",
    "Utterance",
    "Word",
    "__version__",
]
