"""The overload levels (`qa.overload`): thresholds, hysteresis, and the counts."""

from __future__ import annotations

import pytest

from qa.overload import DEGRADED, NORMAL, REFUSING, OverloadOptions, OverloadState


def test_levels_rise_with_the_queue_age_and_fall_one_step_below_the_lower_threshold():
    state = OverloadState(OverloadOptions(enabled=True))
    ages = [0.0, 1.0, 2.5, 4.0, 6.0, 4.0, 2.5, 1.5, 1.0, 0.4, 3.0, 0.0]
    levels = [state.update(age) for age in ages]
    assert levels == [NORMAL, NORMAL, DEGRADED, DEGRADED, REFUSING, REFUSING, REFUSING,
                      DEGRADED, DEGRADED, NORMAL, DEGRADED, NORMAL]
    assert state.episodes == 2


def test_disabled_policy_never_leaves_normal():
    state = OverloadState(OverloadOptions(enabled=False))
    assert [state.update(age) for age in (0.0, 10.0, 100.0)] == [NORMAL] * 3
    assert state.episodes == 0


def test_counts_add_up():
    state = OverloadState(OverloadOptions(enabled=True))
    state.count(degraded=3)
    state.count(refused=1, shed=2)
    assert (state.degraded_utterances, state.refused_calls, state.shed_utterances) == (3, 1, 2)


@pytest.mark.parametrize("options", [
    {"degrade_after_s": 6.0},               # above refuse_after_s
    {"recover_after_s": 3.0},               # above degrade_after_s
    {"shed_after_s": 4.0},                  # below refuse_after_s
    {"max_batch": 0},
])
def test_inconsistent_thresholds_are_refused(options):
    with pytest.raises(ValueError, match="OverloadOptions"):
        OverloadOptions(**options)
