"""Graceful overload: what the pipeline gives up, in order, when speech arrives faster than
the transcription workers can decode it (docs/capacity.md, "Overload").

The signal is the age of the oldest utterance waiting for a worker (the queue age): it is
what a caller waits on, it rises as soon as the workers fall behind whatever the machine,
and it falls back as soon as they catch up. Three levels, with hysteresis so the service
does not flap at a boundary:

- **normal** (0): batches of `PipelineOptions.max_batch`, the full decode (beam 5, one
  sampled retry).
- **degraded** (1), queue age past `degrade_after_s`: workers take batches of up to
  `OverloadOptions.max_batch` and decode them with the cheap step (beam 1, no temperature
  retry), which costs a fraction of the full decode. Every utterance decoded so is counted
  (`qa_overload_degraded_utterances_total`).
- **refusing** (2), queue age past `refuse_after_s`: new calls are refused: they are
  recorded (started and ended, with the reason `refused: overload`) but not transcribed
  and not scored, counted (`qa_calls_refused_total`) and logged with their call id. Calls
  already admitted keep being transcribed.

Last resort, at any level: an utterance that would have waited `shed_after_s` by the end of
its decode (its queue age plus the recent decode time, never shed before `refuse_after_s`)
is not decoded. It is dropped, counted on its call (`CallSummary.dropped_utterances`), in
`qa_utterances_dropped_total` and in `qa_utterances_shed_total`, and logged, so the lag of
everything else stays bounded. Nothing is dropped silently.

The level goes down one step when the queue age falls under the lower threshold
(`degrade_after_s` from refusing, `recover_after_s` from degraded).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: Level names, by level (the `qa_overload_level` gauge's values, docs/metrics.md).
LEVELS = ("normal", "degraded", "refusing")
NORMAL, DEGRADED, REFUSING = 0, 1, 2


@dataclass(frozen=True)
class OverloadOptions:
    """When the pipeline sheds work, and how.

    Attributes:
        enabled: On for live calls (`qa run` turns it on when every source is live). Off by
            default: a file replayed as fast as possible fills the queue by design, and
            its utterances must all be decoded in full (`qa score`, `qa backtest`); off,
            the pipeline never degrades, refuses or sheds by age (the queue-full drop
            policy still applies).
        degrade_after_s: Queue age (s) past which decoding goes cheap and batches grow. 2 s:
            the full decode of a batch of 8 takes about 1-2 s on 2 cores, so an older head
            means the workers are a batch behind.
        recover_after_s: Queue age under which the degraded level returns to normal.
        refuse_after_s: Queue age past which new calls are refused (until it falls under
            `degrade_after_s`).
        shed_after_s: An utterance that would have waited this long by the end of its
            decode (queue age plus the recent decode time) is dropped, counted and logged
            instead of decoded: the lag of what is transcribed stays near this limit, within
            the 10 s goal (issue 11).
        max_batch: Utterances per batch while degraded. 8, as normal: a batch of 16 costs
            somewhat less per utterance, but on one core it took 7 s or more, and every
            utterance in it waits that long on top of its queue age (p95 lag 17 s in the
            10-minute run, docs/capacity.md).
    """

    enabled: bool = False
    degrade_after_s: float = 2.0
    recover_after_s: float = 0.5
    refuse_after_s: float = 5.0
    shed_after_s: float = 7.0
    max_batch: int = 8

    def __post_init__(self) -> None:
        if not (0 <= self.recover_after_s <= self.degrade_after_s <= self.refuse_after_s
                <= self.shed_after_s):
            raise ValueError("OverloadOptions: need recover_after_s <= degrade_after_s <= "
                             "refuse_after_s <= shed_after_s")
        if self.max_batch < 1:
            raise ValueError("OverloadOptions: max_batch must be at least 1")


class OverloadState:
    """The current level and the counts of what was given up (read by the metrics).

    Thread-safe: workers, source threads and the metrics scrape all touch it.
    """

    def __init__(self, options: OverloadOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self.level = NORMAL
        #: Utterances decoded with the cheap step.
        self.degraded_utterances = 0
        #: Calls refused at their start.
        self.refused_calls = 0
        #: Utterances dropped because they would have waited past `shed_after_s`.
        self.shed_utterances = 0
        #: Times the level rose from normal.
        self.episodes = 0

    def update(self, queue_age: float) -> int:
        """Moves the level for the current queue age (seconds); returns the new level."""
        o = self.options
        if not o.enabled:
            return NORMAL
        with self._lock:
            level = self.level
            if queue_age >= o.refuse_after_s:
                new = REFUSING
            elif queue_age >= o.degrade_after_s:
                new = max(level, DEGRADED)
            elif queue_age >= o.recover_after_s:
                new = min(level, DEGRADED)
            else:
                new = NORMAL
            if level == NORMAL and new > NORMAL:
                self.episodes += 1
            self.level = new
            return new

    def count(self, degraded: int = 0, refused: int = 0, shed: int = 0) -> None:
        with self._lock:
            self.degraded_utterances += degraded
            self.refused_calls += refused
            self.shed_utterances += shed
