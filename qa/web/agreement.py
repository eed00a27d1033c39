"""Agreement between raters for calibration: exact agreement and Cohen's kappa per item.

Each scorecard item's points are categories (a reviewer gives 0, 5 or 10, not a real
number), so Cohen's kappa over the points given is the chance-corrected agreement. With
several reviewers the report gives the mean over every pair; against the automatic score,
the mean over reviewers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

__all__ = ["ItemAgreement", "cohen_kappa", "exact_agreement", "item_agreement"]


def exact_agreement(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Share of paired ratings that are equal; None without pairs."""
    if not a:
        return None
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def cohen_kappa(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Cohen's kappa of two raters' paired categorical ratings.

    Returns:
        (p_o - p_e) / (1 - p_e); 1.0 when both raters give one and the same category to
        everything (perfect agreement, which the formula leaves at 0/0); None without pairs
        or when chance agreement is certain but the raters still differ (cannot happen).
    """
    n = len(a)
    if n == 0:
        return None
    observed = exact_agreement(a, b)
    assert observed is not None  # there are pairs
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True, slots=True)
class ItemAgreement:
    """How well ratings of one scorecard item agree.

    Attributes:
        rule_id: The item.
        calls: Calls with at least two reviewers' points on the item.
        between_exact, between_kappa: Mean over reviewer pairs (None: fewer than 2 raters).
        auto_exact, auto_kappa: Mean over reviewers against the automatic score.
    """

    rule_id: str
    calls: int
    between_exact: float | None
    between_kappa: float | None
    auto_exact: float | None
    auto_kappa: float | None


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def item_agreement(rule_id: str, ratings: dict[str, dict[str, float]],
                   automatic: dict[str, float]) -> ItemAgreement:
    """Agreement on one item.

    Args:
        rule_id: The item.
        ratings: reviewer -> call id -> points.
        automatic: call id -> the scorer's points.
    """
    pairs_exact, pairs_kappa = [], []
    for r1, r2 in combinations(sorted(ratings), 2):
        shared = sorted(set(ratings[r1]) & set(ratings[r2]))
        a = [ratings[r1][c] for c in shared]
        b = [ratings[r2][c] for c in shared]
        pairs_exact.append(exact_agreement(a, b))
        pairs_kappa.append(cohen_kappa(a, b))
    auto_exact, auto_kappa = [], []
    for reviewer in sorted(ratings):
        shared = sorted(set(ratings[reviewer]) & set(automatic))
        a = [ratings[reviewer][c] for c in shared]
        b = [automatic[c] for c in shared]
        auto_exact.append(exact_agreement(a, b))
        auto_kappa.append(cohen_kappa(a, b))
    counted = Counter(c for calls in ratings.values() for c in calls)
    return ItemAgreement(rule_id, sum(1 for n in counted.values() if n >= 2),
                         _mean(pairs_exact), _mean(pairs_kappa), _mean(auto_exact),
                         _mean(auto_kappa))
