"""`qa run --config FILE`: the run settings as YAML, validated with file, line and field.

    sources: [file:examples/sample_call.wav?realtime=1, "rtp://127.0.0.1:40000,40002"]
    agent: agent-007
    language: en          # en | zh | auto
    model: base           # a model name or a directory
    workers: 2            # transcription workers: one per core (docs/capacity.md, "All cores")
    queue_size: 64
    json: false
    rules: examples/rules/en_support.yaml   # check every call against this pack
    db: ~/.local/share/qa/calls.db         # the call store: a file or postgresql:// URL
    store: true                            # store calls, segments, events, scorecards
    metrics_port: 9464                     # Prometheus exporter (null = off, 0 = any free port)
    prompts_port: 8765                     # agent prompt page and websocket (null = off)
    prompts_host: 127.0.0.1
    tokens: {agent-007: "a long random secret"}   # per-agent tokens for the prompt page
    recording: true                        # keep each call's audio (docs/recordings.md)
    recording_dir: ''                      # '' = recordings/ beside the call store
    retention_days: 90                     # calls and recordings older are deleted (0 = never)
    recording_codec: flac                  # flac | opus
    overload: true                         # shed work when behind (live sources; capacity.md)
    refuse_after_s: 5.0                    # queue age past which new calls are refused
    shed_after_s: 7.0                      # waited this long: dropped and counted (0 = never)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from qa.errors import ConfigError
from qa.files import read_text
from qa.models import DEFAULT_MODEL
from qa.yamlcheck import compose_yaml


@dataclass(frozen=True)
class RunConfig:
    """Settings of `qa run`; the command line overrides what it sets.

    Attributes:
        sources: Source specifications (see `qa.sources.spec`).
        agent: Agent id recorded on every call.
        language: `en`, `zh` or `auto` (detect per utterance; slower).
        model: Model name or directory.
        workers: Transcription worker threads, each decoding a batch on one core.
        queue_size: Utterances that may wait for a worker before the drop policy applies.
        json: Print JSON lines instead of text.
        rules: Rule pack to check every call against ('' = none).
        db: Call store: an SQLite path or a `postgresql://` URL ('' = `$QA_DB` or
            `~/.local/share/qa/calls.db`).
        store: Store calls at all.
        metrics_port: Port of the Prometheus exporter (None = off; 0 = any free port, as
            everywhere a port is asked for: the one bound is logged and printed).
        metrics_host: Address the exporter binds.
        prompts_port: Port of the agent prompt page and websocket (None = off; 0 = any free
            port).
        prompts_host: Address the prompt server binds.
        tokens: Agent id to token, for the prompt page.
        recording: Keep each call's audio, masked where the transcript is redacted.
        recording_dir: Where recordings go ('' = `recordings/` beside the call store).
        retention_days: Calls and their recordings older than this are deleted at start
            and by `qa recordings prune` (0 = keep for ever).
        recording_codec: `flac` or `opus`.
        overload: Apply the overload policy (`qa.overload`) when a source is live: a cheap
            decode, then refusing new calls, then shedding utterances that waited too long.
        refuse_after_s: Queue age (s) past which new calls are refused.
        shed_after_s: Wait (s) after which an utterance is dropped and counted instead of
            decoded; 0 = never shed (the lag then grows while the workers are behind).
    """

    sources: tuple[str, ...] = ()
    agent: str = ""
    language: str = "auto"
    model: str = DEFAULT_MODEL
    workers: int = 2
    queue_size: int = 64
    json: bool = False
    rules: str = ""
    db: str = ""
    store: bool = True
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    prompts_port: int | None = None
    prompts_host: str = "127.0.0.1"
    tokens: tuple[tuple[str, str], ...] = ()
    recording: bool = True
    recording_dir: str = ""
    retention_days: int = 90
    recording_codec: str = "flac"
    overload: bool = True
    refuse_after_s: float = 5.0
    shed_after_s: float = 7.0


_TYPES: dict[str, type | tuple[type, ...]] = {
          "sources": list, "agent": str, "language": str, "model": str, "workers": int,
          "recording": bool, "recording_dir": str, "retention_days": int, "recording_codec": str,
          "queue_size": int, "json": bool, "rules": str, "db": str, "store": bool,
          "metrics_port": int, "metrics_host": str, "prompts_port": int, "prompts_host": str,
          "tokens": dict, "overload": bool, "refuse_after_s": (int, float),
          "shed_after_s": (int, float)}
#: Settings that `null` switches off.
_OPTIONAL = frozenset({"metrics_port", "prompts_port"})


def load_config(path: str | Path) -> RunConfig:
    """Reads and validates a run configuration.

    Raises:
        ConfigError: naming the file, the line and the field at fault (also for a file that
            is not a regular file, over 1 MiB, not UTF-8, or YAML nested too deep or tagged).
    """
    path = str(path)
    # Bounded, regular files only, and YAML checked for depth and tags before it is built.
    root = compose_yaml(read_text(path), path)
    if root is None:
        return RunConfig()
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(path, "expected a mapping of settings", line=root.start_mark.line + 1)
    allowed = [f.name for f in fields(RunConfig)]
    values: dict[str, Any] = {}  # checked one by one against `_TYPES` below
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(path, "a setting name must be a plain word", line=line)
        key = key_node.value
        if key not in _TYPES:
            raise ConfigError(
                path, f"unknown setting; allowed: {', '.join(allowed)}", line=line, field=key
            )
        try:
            value: Any = yaml.safe_load(yaml.serialize(value_node))
        except yaml.YAMLError as exc:  # e.g. a list or mapping used as a mapping key
            raise ConfigError(path, f"invalid value: {getattr(exc, 'problem', exc)}",
                              line=value_node.start_mark.line + 1, field=key) from None
        expected = _TYPES[key]
        if value is None and key in _OPTIONAL:
            values[key] = None
            continue
        if (expected in (int, (int, float)) and isinstance(value, bool)
                or not isinstance(value, expected)):
            name = "number" if isinstance(expected, tuple) else expected.__name__
            raise ConfigError(
                path, f"expected {name}, got {type(value).__name__}",
                line=value_node.start_mark.line + 1, field=key,
            )
        if key == "sources":
            assert isinstance(value, list)
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise ConfigError(path, "expected a source string", line=line,
                                      field=f"sources[{index}]")
            value = tuple(value)
        if key == "tokens":
            assert isinstance(value, dict)
            for agent, token in value.items():
                if not isinstance(token, str) or not token:
                    raise ConfigError(path, "expected a non-empty token string", line=line,
                                      field=f"tokens.{agent}")
            value = tuple((str(agent), token) for agent, token in value.items())
        if key in ("metrics_port", "prompts_port") and not 0 <= value <= 65535:
            raise ConfigError(path, "expected a TCP port 0-65535 (0 = any free port, null = off)",
                              line=value_node.start_mark.line + 1, field=key)
        if key == "language" and value not in ("en", "zh", "auto"):
            raise ConfigError(path, "expected en, zh or auto",
                              line=value_node.start_mark.line + 1, field=key)
        if key == "retention_days" and value < 0:
            raise ConfigError(path, "expected 0 (keep for ever) or more days",
                              line=value_node.start_mark.line + 1, field=key)
        if key == "recording_codec" and value not in ("flac", "opus"):
            raise ConfigError(path, "expected flac or opus",
                              line=value_node.start_mark.line + 1, field=key)
        if key == "refuse_after_s" and not 0 < value <= 3600:
            raise ConfigError(path, "expected seconds, more than 0 (at most 3600)",
                              line=value_node.start_mark.line + 1, field=key)
        if key == "shed_after_s" and not 0 <= value <= 3600:
            raise ConfigError(path, "expected seconds, 0 (never shed) to 3600",
                              line=value_node.start_mark.line + 1, field=key)
        if key in ("workers", "queue_size") and value < 1:
            raise ConfigError(path, "must be at least 1",
                              line=value_node.start_mark.line + 1, field=key)
        values[key] = float(value) if isinstance(expected, tuple) else value
    config = RunConfig(**values)
    if config.shed_after_s and config.shed_after_s < config.refuse_after_s:
        raise ConfigError(path, f"must be at least refuse_after_s ({config.refuse_after_s:g})"
                          " or 0 (never shed)", field="shed_after_s")
    return config


def check_ports(config: RunConfig, where: str = "command line") -> None:
    """Checks that the exporter and prompt ports are valid and free, before the model loads.

    Each port is bound once and released (with SO_REUSEADDR, as the servers bind), so a port
    in use or one that needs privileges is reported in a second, not after a minute of
    model loading.

    Args:
        config: The merged settings.
        where: Names the file or the command line in errors.

    Raises:
        ConfigError: a port outside 0-65535, both servers on one port, a host that does not
            resolve, a port in use or not permitted.
    """
    seen: dict[tuple[str, int], str] = {}
    for field, host in (("metrics_port", config.metrics_host),
                        ("prompts_port", config.prompts_host)):
        port = getattr(config, field)
        if port is None:
            continue
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(
                where, f"expected a TCP port 0-65535 (0 = any free port), got {port!r}",
                field=field)
        if port == 0:
            continue  # the system picks a free one when the server binds
        if (host, port) in seen:
            raise ConfigError(where, f"port {port} is also the {seen[host, port]}", field=field)
        seen[host, port] = field
        _probe_bind(host, port, where, field)


def _probe_bind(host: str, port: int, where: str, field: str) -> None:
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(where, f"cannot resolve host {host!r}: {exc}", field=field) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = {
                errno.EADDRINUSE: "is in use by another process",
                errno.EACCES: "needs privileges (use a port above 1023)",
                errno.EADDRNOTAVAIL: "is on an address this machine does not have",
            }.get(exc.errno or 0, f"cannot be bound: {exc.strerror or exc}")
            raise ConfigError(where, f"port {port} on {host} {reason}", field=field) from None
