"""The per-call rule state machine, driven by the audio clock only.

Events come out when their cause is known: a step done at the segment that performs it, a
missed step at its deadline (as soon as `advance` passes it, while the call still runs),
handle-time warnings and the breach at their exact times, dead air when a silence passes its
threshold. Replaying the same inputs yields the same events; nothing reads the wall clock.

Event kinds and severities (docs/rules.md, "Events"):
* `step_done` info, `points` = the step's points; a step done late (after its `step_missed`)
  or out of order (before a step named in its `after`) is `step_done` with severity warning
  and 0 points, and the scorecard awards it nothing.
* `step_due` info when a triggered step starts to run (e.g. the customer complained);
  `step_missed` warning at the deadline, `points` = minus the step's points.
* `forbidden_phrase` with the rule's severity, once per rule per segment.
* `handle_time_warning` warning; `handle_time_breach` critical.
* `dead_air`, `talk_over`, `talk_share` warning; `category` info, once per category.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from qa.clock import format_clock
from qa.conversation import DEAD_AIR_MIN, ConversationTotals, SpeechTimeline
from qa.rules.detect import RuleDetector, build_matcher
from qa.rules.intents import IntentMatcher
from qa.rules.matcher import PhraseHit, PhraseMatcher
from qa.rules.schema import RulePack, Step, speaker_matches
from qa.rules.scoring import score
from qa.types import Event, EventKind, Scorecard, Segment, Severity, Speaker

log = logging.getLogger("qa.rules.engine")


@dataclass(slots=True)
class _StepState:
    step: Step
    due_at: float | None = None  # when the step became applicable (None: not yet)
    deadline: float | None = None  # absolute deadline; None: end of call or not due yet
    done_at: float | None = None
    missed: bool = False
    trigger_start: float = 0.0  # start of the speech that fired the trigger
    # Hits seen before the trigger fired: segments of the two speakers may arrive out of
    # order, so an apology can be processed before the complaint that it answers.
    early_hits: list[PhraseHit] = field(default_factory=list)


class CallRules:
    """Evaluates one call against a rule pack.

    Feed it final segments (`on_segment`), stretches of speech (`on_speech`) and the audio
    clock (`advance`), then `finish` at the end of the call. Each method returns the events
    it produced, ordered by time; `events` holds all of them.
    """

    def __init__(
        self,
        pack: RulePack,
        call_id: str,
        agent_id: str = "",
        matcher: PhraseMatcher | None = None,
        intents: IntentMatcher | None | bool = True,
    ) -> None:
        self.pack = pack
        self.call_id = call_id
        self.agent_id = agent_id
        # One matcher per pack, shared by its calls: scanning keeps no per-call state.
        self.matcher = matcher if matcher is not None else build_matcher(pack)
        # `True`: the pack's own intents (None when it has no examples); `False`: phrases only.
        self.detector = RuleDetector(pack, self.matcher, intents)
        self.intents: IntentMatcher | None = self.detector.intents
        self._steps = {s.id: _StepState(s) for s in pack.steps}
        for st in self._steps.values():
            if st.step.trigger is None and st.step.deadline.origin == "start":
                st.due_at = 0.0
                st.deadline = st.step.deadline.within
        self._by_trigger: dict[str, list[_StepState]] = {}
        for st in self._steps.values():
            if st.step.trigger is not None:
                self._by_trigger.setdefault(st.step.trigger, []).append(st)
        self._priority = {c.id: c.priority for c in pack.categories}
        self._fired_triggers: set[str] = set()
        self._previous: dict[Speaker, Segment] = {}
        self._categories: list[str] = []
        self._warned: set[float] = set()
        self._breached = False
        self._now = 0.0
        self.timeline = SpeechTimeline()
        # Dead air is judged up to the clock: `_quiet_since` is where the last known speech
        # before the clock ended; `_reported_silences` the silence starts already reported.
        self._quiet_since = 0.0
        self._reported_silences: set[float] = set()
        self._finished = False
        self._events: list[Event] = []

    # -- public state ----------------------------------------------------------------

    @property
    def events(self) -> tuple[Event, ...]:
        """Every event so far, in the order they were produced."""
        return tuple(self._events)

    @property
    def categories(self) -> tuple[str, ...]:
        """Categories recorded on the call, in the order first heard."""
        return tuple(self._categories)

    @property
    def category(self) -> str | None:
        """The call's main category: the recorded one with the highest priority."""
        if not self._categories:
            return None
        return max(
            self._categories, key=lambda c: (self._priority.get(c, 0), -self._categories.index(c))
        )

    def scorecard(self) -> Scorecard:
        """The call's scorecard from every event so far (complete after `finish`)."""
        return score(self.pack, self._events, self.call_id)

    # -- inputs ----------------------------------------------------------------------

    def on_segment(self, segment: Segment) -> list[Event]:
        """Evaluates one final segment (partial ones are ignored).

        Args:
            segment: Final segments, in end-time order per speaker.

        Returns:
            The events it produced.
        """
        if not segment.final or not segment.text.strip():
            return []
        previous = self._previous.get(segment.speaker)
        self._previous[segment.speaker] = segment
        hits = self.detector.detect(segment, previous)
        out: list[Event] = []
        # Deadlines that passed before this segment began are settled first, so a late step
        # is seen as late even when `advance` has not been called yet.
        out += self._fire_deadlines(segment.start)
        seen_rules: set[str] = set()
        for hit in hits:
            if hit.rule_id in seen_rules:
                continue
            produced = self._on_hit(hit)
            if produced is not None:
                seen_rules.add(hit.rule_id)
                out += produced
        return self._emit(out)

    def on_speech(self, speaker: Speaker, start: float, end: float) -> list[Event]:
        """Records a stretch of speech (an utterance) for dead air, talk-over and talk share.

        Args:
            speaker: The channel.
            start: Start on the call clock, seconds.
            end: End on the call clock, seconds.

        Returns:
            The events it produced (talk-over with the other channel); dead air is judged
            by `advance`, once both channels are known up to the clock.
        """
        out: list[Event] = []
        cond = self.pack.conditions
        overlaps = self.timeline.add(speaker, start, end)
        if cond.talk_over is not None:
            limit = cond.talk_over.seconds
            for lo, hi in overlaps:
                if hi - lo > limit:
                    out.append(
                        self._event(
                            lo + limit,
                            EventKind.TALK_OVER,
                            "talk_over",
                            Severity.WARNING,
                            -cond.talk_over.points,
                            f"both speaking {hi - lo:.1f} s ({lo:.1f}-{hi:.1f} s)",
                            cond.talk_over.prompt or "Let the customer finish speaking.",
                            end=hi,
                        )
                    )
        return self._emit(out)

    def advance(self, now: float) -> list[Event]:
        """Moves the clock: the transcript and speech are complete up to `now` (seconds).

        Fires missed deadlines, handle-time warnings and breach, and dead air, each at its own
        time (not at `now`).
        """
        if now < self._now:
            return []
        self._now = now
        out = self._fire_deadlines(now)
        ht = self.pack.handle_time
        for w in ht.warnings:
            if w <= now and w not in self._warned:
                self._warned.add(w)
                msg = ht.warning_prompt.format(elapsed=format_clock(w), action=ht.action)
                out.append(
                    self._event(
                        w,
                        EventKind.HANDLE_TIME_WARNING,
                        "handle_time",
                        Severity.WARNING,
                        0.0,
                        f"call at {format_clock(w)}",
                        msg,
                    )
                )
        if ht.limit <= now and not self._breached:
            self._breached = True
            out.append(
                self._event(
                    ht.limit,
                    EventKind.HANDLE_TIME_BREACH,
                    "handle_time",
                    Severity.CRITICAL,
                    -ht.points,
                    f"call passed {format_clock(ht.limit)}",
                    f"{format_clock(ht.limit)} limit passed: {ht.action}",
                )
            )
        if self.pack.conditions.dead_air is not None:
            out += self._dead_air(now)
        return self._emit(out)

    def finish(self, end: float) -> list[Event]:
        """Ends the call at `end` seconds: the remaining deadlines, talk share.

        Steps still not done (deadline "end of call", a deadline beyond the end, or a
        trigger that fired) are missed at `end`.
        """
        if self._finished:
            return []
        out = self.advance(end)
        pending: list[Event] = []
        for st in self._steps.values():
            if st.done_at is None and not st.missed and self._required(st):
                pending.append(self._missed(st, end))
        share = self.pack.conditions.talk_share
        if share is not None:
            ratio = self.conversation(end).agent_share()
            if ratio is not None and not share.min <= ratio <= share.max:
                pending.append(
                    self._event(
                        end,
                        EventKind.TALK_SHARE,
                        "talk_share",
                        Severity.WARNING,
                        -share.points,
                        f"agent talk share {ratio:.0%} (band {share.min:.0%}-{share.max:.0%})",
                        share.prompt or "Agent talk share outside the expected band.",
                    )
                )
        self._finished = True
        return out + self._emit(pending)

    @property
    def dead_air_min(self) -> float | None:
        """The pack's dead-air threshold in seconds (None when the pack judges no dead air)."""
        rule = self.pack.conditions.dead_air
        return rule.seconds if rule is not None else None

    def conversation(self, end: float) -> ConversationTotals:
        """Dead air (at the pack's threshold, or 5 s), talk-over and talk up to `end`."""
        threshold = self.dead_air_min
        return self.timeline.totals(end, DEAD_AIR_MIN if threshold is None else threshold)

    # -- internals -------------------------------------------------------------------

    def _required(self, st: _StepState) -> bool:
        # A triggered step only applies once its trigger fired; others always apply.
        return st.step.trigger is None or st.due_at is not None

    def _on_hit(self, hit: PhraseHit) -> list[Event] | None:
        pack = self.pack
        out: list[Event] = []
        rule = hit.rule_id
        if rule in self._steps:
            st = self._steps[rule]
            if not speaker_matches(st.step.speaker, hit.speaker):
                return None
            if st.done_at is not None:
                return None
            if not self._required(st):
                st.early_hits.append(hit)
                return None
            if st.step.trigger is not None and hit.start < st.trigger_start:
                return None  # said before the trigger: it does not answer it
            out += self._done(st, hit)
            return out
        for f in pack.forbidden:
            if f.id == rule:
                if not speaker_matches(f.speaker, hit.speaker):
                    return None
                return [
                    self._event(
                        hit.start,
                        EventKind.FORBIDDEN_PHRASE,
                        f.id,
                        f.severity,
                        -f.points,
                        hit.evidence_text,
                        f.prompt,
                        hit.speaker,
                        hit.end,
                        hit=hit,
                    )
                ]
        for c in pack.categories:
            if c.id == rule:
                if not speaker_matches(c.speaker, hit.speaker):
                    return None
                if c.id not in self._categories:
                    self._categories.append(c.id)
                    out.append(
                        self._event(
                            hit.start,
                            EventKind.CATEGORY,
                            c.id,
                            Severity.INFO,
                            0.0,
                            hit.evidence_text,
                            f"category: {c.id}",
                            hit.speaker,
                            hit.end,
                            hit=hit,
                        )
                    )
                out += self._trigger(c.id, hit.start, hit.end)
                return out
        for t in pack.triggers:
            if t.id == rule:
                if not speaker_matches(t.speaker, hit.speaker):
                    return None
                return self._trigger(t.id, hit.start, hit.end)
        return None

    def _trigger(self, trigger_id: str, start: float, at: float) -> list[Event]:
        if trigger_id in self._fired_triggers:
            return []
        self._fired_triggers.add(trigger_id)
        out = []
        for st in self._by_trigger.get(trigger_id, []):
            if st.due_at is not None:
                continue
            st.due_at = at
            st.trigger_start = start
            if st.step.deadline.origin == "trigger" and st.step.deadline.within is not None:
                st.deadline = at + st.step.deadline.within
            out.append(
                self._event(
                    at,
                    EventKind.STEP_DUE,
                    st.step.id,
                    Severity.INFO,
                    0.0,
                    f"trigger '{trigger_id}'",
                    st.step.prompt,
                )
            )
            answer = next((h for h in st.early_hits if h.start >= start), None)
            st.early_hits.clear()
            if answer is not None:
                out += self._done(st, answer)
        return out

    def _done(self, st: _StepState, hit: PhraseHit) -> list[Event]:
        step = st.step
        st.done_at = hit.start
        out: list[Event] = []
        not_before = [a for a in step.after if self._steps[a].done_at is None]
        if st.missed:
            out.append(
                self._event(
                    hit.start,
                    EventKind.STEP_DONE,
                    step.id,
                    Severity.WARNING,
                    0.0,
                    hit.evidence_text,
                    f"done late: {step.prompt}",
                    hit.speaker,
                    hit.end,
                    hit=hit,
                )
            )
        elif not_before:
            out.append(
                self._event(
                    hit.start,
                    EventKind.STEP_DONE,
                    step.id,
                    Severity.WARNING,
                    0.0,
                    hit.evidence_text,
                    f"out of order: {', '.join(not_before)} must come first",
                    hit.speaker,
                    hit.end,
                    hit=hit,
                )
            )
        else:
            out.append(
                self._event(
                    hit.start,
                    EventKind.STEP_DONE,
                    step.id,
                    Severity.INFO,
                    step.points,
                    hit.evidence_text,
                    f"done ({hit.kind.value} {hit.score:.2f})",
                    hit.speaker,
                    hit.end,
                    hit=hit,
                )
            )
        # Steps whose deadline runs from this one become due now.
        for other in self._steps.values():
            if other.step.deadline.origin == step.id and other.done_at is None:
                other.due_at = hit.end
                if other.step.deadline.within is not None:
                    other.deadline = hit.end + other.step.deadline.within
                out.append(
                    self._event(
                        hit.end,
                        EventKind.STEP_DUE,
                        other.step.id,
                        Severity.INFO,
                        0.0,
                        f"after step '{step.id}'",
                        other.step.prompt,
                    )
                )
        if step.id in self._by_trigger:
            out += self._trigger(step.id, hit.start, hit.end)
        return out

    def _missed(self, st: _StepState, at: float) -> Event:
        st.missed = True
        return self._event(
            at,
            EventKind.STEP_MISSED,
            st.step.id,
            Severity.WARNING,
            -st.step.points,
            f"not done by {format_clock(at)}",
            st.step.prompt,
        )

    def _fire_deadlines(self, now: float) -> list[Event]:
        out = []
        for st in self._steps.values():
            if (
                st.done_at is None
                and not st.missed
                and st.deadline is not None
                and st.deadline < now
            ):
                out.append(self._missed(st, st.deadline))
        return out

    def _dead_air(self, now: float) -> list[Event]:
        rule = self.pack.conditions.dead_air
        assert rule is not None
        quiet = self._quiet_since
        later = [(s, e) for s, e in self.timeline.stretches() if e > quiet]
        silences: list[float] = []
        for start, end in later:
            if start >= now:
                break
            if start - quiet > rule.seconds:
                silences.append(quiet)
            quiet = max(quiet, end)
        if now - quiet > rule.seconds:
            silences.append(quiet)
        self._quiet_since = min(quiet, now)
        out = []
        for silent_from in silences:
            if silent_from in self._reported_silences:
                continue
            self._reported_silences.add(silent_from)
            out.append(
                self._event(
                    silent_from + rule.seconds,
                    EventKind.DEAD_AIR,
                    "dead_air",
                    Severity.WARNING,
                    -rule.points,
                    f"silence from {silent_from:.1f} s",
                    rule.prompt or "Dead air: tell the customer what you are doing.",
                )
            )
        return out

    def _event(
        self,
        time: float,
        kind: EventKind,
        rule_id: str,
        severity: Severity,
        points: float,
        evidence: str,
        message: str,
        speaker: Speaker = Speaker.UNKNOWN,
        end: float | None = None,
        hit: PhraseHit | None = None,
    ) -> Event:
        return Event(
            self.call_id,
            round(time, 3),
            kind,
            rule_id,
            severity,
            points,
            evidence,
            message,
            speaker,
            round(end if end is not None else time, 3),
            match=hit.kind.value if hit is not None else "",
            score=round(hit.score, 3) if hit is not None else None,
            example=hit.phrase if hit is not None else "",
        )

    def _emit(self, events: list[Event]) -> list[Event]:
        events.sort(key=lambda e: e.time)
        self._events.extend(events)
        for e in events:
            log.debug("call %s: %s %s at %.2f", self.call_id, e.kind, e.rule_id, e.time)
        return events
