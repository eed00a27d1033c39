"""`qa run --config FILE`: the run settings as YAML, validated with file, line and field.

    sources: [file:examples/sample_call.wav?realtime=1, "rtp://127.0.0.1:40000,40002"]
    agent: agent-007
    language: en          # en | zh | auto
    model: base           # a model name or a directory
    workers: 1
    queue_size: 64
    json: false
    rules: examples/rules/en_support.yaml   # check every call against this pack
    db: ~/.local/share/qa/calls.db         # the call store ('' = default path)
    store: true                            # store calls, segments, events, scorecards
    metrics_port: 9464                     # Prometheus exporter (0 = off)
    prompts_port: 8765                     # agent prompt page and websocket (0 = off)
    prompts_host: 127.0.0.1
    tokens: {agent-007: "a long random secret"}   # per-agent tokens for the prompt page
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from qa.errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    """Settings of `qa run`; the command line overrides what it sets.

    Attributes:
        sources: Source specifications (see `qa.sources.spec`).
        agent: Agent id recorded on every call.
        language: `en`, `zh` or `auto` (detect per utterance; slower).
        model: Model name or directory.
        workers: Transcription worker threads.
        queue_size: Utterances that may wait for a worker before the drop policy applies.
        json: Print JSON lines instead of text.
        rules: Rule pack to check every call against ('' = none).
        db: Call store path ('' = `$QA_DB` or `~/.local/share/qa/calls.db`).
        store: Store calls at all.
        metrics_port: Port of the Prometheus exporter (0 = off).
        metrics_host: Address the exporter binds.
        prompts_port: Port of the agent prompt page and websocket (0 = off).
        prompts_host: Address the prompt server binds.
        tokens: Agent id to token, for the prompt page.
    """

    sources: tuple[str, ...] = ()
    agent: str = ""
    language: str = "auto"
    model: str = "base"
    workers: int = 1
    queue_size: int = 64
    json: bool = False
    rules: str = ""
    db: str = ""
    store: bool = True
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    prompts_port: int = 0
    prompts_host: str = "127.0.0.1"
    tokens: tuple[tuple[str, str], ...] = ()


_TYPES = {"sources": list, "agent": str, "language": str, "model": str, "workers": int,
          "queue_size": int, "json": bool, "rules": str, "db": str, "store": bool,
          "metrics_port": int, "metrics_host": str, "prompts_port": int, "prompts_host": str,
          "tokens": dict}


def load_config(path: str | Path) -> RunConfig:
    """Reads and validates a run configuration.

    Raises:
        ConfigError: naming the file, the line and the field at fault.
    """
    path = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            path, f"not valid YAML: {getattr(exc, 'problem', exc)}",
            line=mark.line + 1 if mark else None,
        ) from None
    if root is None:
        return RunConfig()
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(path, "expected a mapping of settings", line=root.start_mark.line + 1)
    allowed = [f.name for f in fields(RunConfig)]
    values: dict[str, object] = {}
    for key_node, value_node in root.value:
        key, line = key_node.value, key_node.start_mark.line + 1
        if key not in _TYPES:
            raise ConfigError(
                path, f"unknown setting; allowed: {', '.join(allowed)}", line=line, field=key
            )
        value = yaml.safe_load(yaml.serialize(value_node))
        expected = _TYPES[key]
        if expected is int and isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(
                path, f"expected {expected.__name__}, got {type(value).__name__}",
                line=value_node.start_mark.line + 1, field=key,
            )
        if key == "sources":
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise ConfigError(path, "expected a source string", line=line,
                                      field=f"sources[{index}]")
            value = tuple(value)
        if key == "tokens":
            for agent, token in value.items():
                if not isinstance(token, str) or not token:
                    raise ConfigError(path, "expected a non-empty token string", line=line,
                                      field=f"tokens.{agent}")
            value = tuple((str(agent), token) for agent, token in value.items())
        if key in ("metrics_port", "prompts_port") and not 0 <= value <= 65535:
            raise ConfigError(path, "expected a TCP port (0 = off)",
                              line=value_node.start_mark.line + 1, field=key)
        if key == "language" and value not in ("en", "zh", "auto"):
            raise ConfigError(path, "expected en, zh or auto",
                              line=value_node.start_mark.line + 1, field=key)
        if key in ("workers", "queue_size") and value < 1:
            raise ConfigError(path, "must be at least 1",
                              line=value_node.start_mark.line + 1, field=key)
        values[key] = value
    return RunConfig(**values)
