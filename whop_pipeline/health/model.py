"""Churn risk learned from the account's own history (docs/health.md#churn-risk).

Training rows: at snapshots every 15 days back from 30 days before the end of the data, the
renewing memberships active then, with their facts at the snapshot (``membership_facts``) and the
label ``ends_within_30d`` (``membership_labels``). ``train`` (``fitting.fit``, shared with the lead
score) holds out the latest quarter of the snapshots, compares a logistic regression and gradient
boosting on that later window against the best single-feature rule, and refits the better model on
every row. Too little history gives a
fixed, documented rule instead (``chosen == "rule"``); a model that does not rank the holdout
better than chance is flagged ``no_signal`` and its scores must not be published as risk.

Scores: ``ChurnModel.score`` gives ``churn_risk`` (0–100) and ``reasons`` (plain words, the two or
three features that push the risk up most). ``person_churn_risk``: a person's highest.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from whop_pipeline.health import fitting
from whop_pipeline.health.fitting import MAX_REASONS, MIN_SNAPSHOTS
from whop_pipeline.health.training import (
    FEATURES,
    LABEL,
    STEP_DAYS,
    data_span,
    feature_matrix,
    snapshot_times,
    training_rows,
)

# The pickled models' shape (``ChurnModel`` and ``lead.LeadModel`` carry it as ``format``): bump it
# whenever a stored model of the previous shape can no longer be loaded or scored, so stored ones
# are retrained rather than used.
MODEL_FORMAT = 1
MIN_POSITIVES = 30
__all__ = [
    "MAX_REASONS",
    "MIN_SNAPSHOTS",
    "STEP_DAYS",
    "data_span",
    "snapshot_times",
    "training_rows",
]

# Gradient boosting may only raise the risk with the flag and with failures.
MONOTONIC = [0, 1, 1, 1, 0]
TASK = fitting.Task(
    features=FEATURES,
    label=LABEL,
    monotonic=MONOTONIC,
    matrix=feature_matrix,
    min_positives=MIN_POSITIVES,
    positive="ended membership",
    positives="ended memberships",
)

# The thin-history rule: the base rate plus fixed bumps, capped at 0.95.
RULE_DEFAULT_BASE_RATE = 0.07
RULE_BUMP_CANCEL_AT_PERIOD_END = 0.35
RULE_BUMP_FAILED_30D = 0.20  # per failed payment in 30 days, at most two
RULE_BUMP_FAILED_90D = 0.05  # per failed payment in 90 days, at most two
RULE_CAP = 0.95

NO_REASON = "no strong risk signal"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(feature: str, value: float, raises_when_high: bool) -> str:
    """A feature's value in plain words, as a reason for the risk."""
    if feature == "cancel_at_period_end_known":
        return "set to cancel at period end" if value else "not set to cancel at period end"
    if feature == "failed_payments_30d":
        return f"{_plural(round(value), 'failed payment')} in 30 days"
    if feature == "failed_payments_90d":
        return f"{_plural(round(value), 'failed payment')} in 90 days"
    if feature == "log_tenure_days":
        days = round(math.expm1(value))
        return (
            f"member for only {_plural(days, 'day')}"
            if not raises_when_high
            else f"member for {_plural(days, 'day')}"
        )
    if feature == "monthly_revenue_usd":
        kind = "high" if raises_when_high else "low"
        return f"{kind} monthly revenue (${value:,.2f})"
    raise KeyError(feature)


# -- the model ----------------------------------------------------------------------------------


@dataclass
class ChurnModel(fitting.ScoredModel):
    """A fitted churn model. ``chosen``: "logistic", "gradient_boosting" or "rule". ``no_signal``:
    the holdout showed no ranking better than chance; do not publish its scores as risk."""

    FEATURES: ClassVar[list[str]] = FEATURES
    SCORE: ClassVar[str] = "churn_risk"
    NO_REASON: ClassVar[str] = NO_REASON
    SAID_ONCE: ClassVar[tuple[tuple[str, str], ...]] = (
        ("failed_payments_30d", "failed_payments_90d"),
    )

    base_rate: float = RULE_DEFAULT_BASE_RATE
    format: int = MODEL_FORMAT

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        return feature_matrix(features)

    def rule_probability(self, x: pd.DataFrame) -> np.ndarray:
        return _rule_probability(x, self.base_rate)

    def describe(self, feature: str, value: float, raises_when_high: bool) -> str:
        return describe(feature, value, raises_when_high)

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """``churn_risk`` (0–100, the probability in percent, rounded) and ``reasons`` per row of
        membership facts (pass the active memberships), on the same index."""
        return super().score(features)


def _rule_probability(x: pd.DataFrame, base_rate: float) -> np.ndarray:
    p = (
        base_rate
        + RULE_BUMP_CANCEL_AT_PERIOD_END * x["cancel_at_period_end_known"].to_numpy()
        + RULE_BUMP_FAILED_30D * x["failed_payments_30d"].clip(upper=2).to_numpy()
        + RULE_BUMP_FAILED_90D * x["failed_payments_90d"].clip(upper=2).to_numpy()
    )
    return np.clip(p, 0.0, RULE_CAP)


def rule_model(rows: pd.DataFrame, reason: str) -> ChurnModel:
    """The thin-history rule: the observed base rate (else 7%) plus fixed bumps for the flag and
    failed payments. Not validated: ``metrics`` hold only counts."""
    base = fitting.observed_rate(rows, LABEL, RULE_DEFAULT_BASE_RATE)
    # The rule's wording: a bump is a reason when it applies (medians 0 for the flag and failures).
    medians = pd.Series(0.0, index=FEATURES)
    return ChurnModel(
        chosen="rule",
        metrics=fitting.rule_metrics(rows, LABEL),
        reason=reason,
        base_rate=base,
        medians=medians,
    )


def _candidates() -> dict[str, Any]:
    return fitting.candidates(MONOTONIC)


def train(rows: pd.DataFrame, *, now: dt.datetime | pd.Timestamp) -> ChurnModel:
    """Fit the churn model on ``training_rows`` (see the module docstring and docs/health.md)."""
    fitted = fitting.fit(rows, now=now, task=TASK)
    if isinstance(fitted, fitting.Thin):
        return rule_model(fitted.rows, fitted.reason)
    return ChurnModel(
        chosen=fitted.chosen,
        metrics=fitted.metrics,
        no_signal=fitted.no_signal,
        reason=fitted.reason,
        estimator=fitted.estimator,
        medians=fitted.medians,
        base_rate=fitted.base_rate,
    )


def person_churn_risk(membership_scores: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """Per person key, the highest ``churn_risk`` of their active memberships, its ``reasons`` and
    ``membership_id``. People with no active membership scored are left out."""
    active = facts[facts["active_at"].astype(bool)][["person_key"]]
    joined = active.join(membership_scores, how="inner")
    joined = joined[joined["person_key"].notna()]
    if joined.empty:
        return pd.DataFrame(
            columns=["churn_risk", "reasons", "membership_id"],
            index=pd.Index([], name="person_key"),
        )
    joined = joined.rename_axis("membership_id").reset_index()
    top = joined.sort_values(
        ["churn_risk", "membership_id"], ascending=[False, True], kind="stable"
    )
    top = top.drop_duplicates("person_key").set_index("person_key").sort_index()
    return top[["churn_risk", "reasons", "membership_id"]]
