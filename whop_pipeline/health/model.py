"""Churn risk learned from the account's own history (docs/health.md#churn-risk).

Training rows: at snapshots every 15 days back from 30 days before the end of the data, the
renewing memberships active then, with their facts at the snapshot (``membership_facts``) and the
label ``ends_within_30d`` (``membership_labels``). ``train`` holds out the latest quarter of the
snapshots, compares a logistic regression and gradient boosting on that later window against the
best single-feature rule, and refits the better model on every row. Too little history gives a
fixed, documented rule instead (``chosen == "rule"``); a model that does not rank the holdout
better than chance is flagged ``no_signal`` and its scores must not be published as risk.

Scores: ``ChurnModel.score`` gives ``churn_risk`` (0–100) and ``reasons`` (plain words, the two or
three features that push the risk up most). ``person_churn_risk``: a person's highest.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from whop_pipeline.health.facts import LABEL_DAYS, _utc
from whop_pipeline.health.training import (
    FEATURES,
    LABEL,
    STEP_DAYS,
    data_span,
    feature_matrix,
    snapshot_times,
    training_rows,
)

HOLDOUT_SHARE = 0.25
MIN_POSITIVES = 30
MIN_SNAPSHOTS = 2
# Holdout AUC within this of 0.5 is chance: no signal.
NO_SIGNAL_MARGIN = 0.05
# A model this far below the best single-feature rule on the holdout is not trusted either.
BASELINE_NOISE = 0.02
# Rows beyond this are subsampled (fixed seed) for fitting; metrics use every holdout row.
MAX_FIT_ROWS = 200_000
RANDOM_STATE = 0
__all__ = ["STEP_DAYS", "data_span", "snapshot_times", "training_rows"]

FAILED_30D, FAILED_90D = (
    FEATURES.index("failed_payments_30d"),
    FEATURES.index("failed_payments_90d"),
)
# Gradient boosting may only raise the risk with the flag and with failures.
MONOTONIC = [0, 1, 1, 1, 0]

# The thin-history rule: the base rate plus fixed bumps, capped at 0.95.
RULE_DEFAULT_BASE_RATE = 0.07
RULE_BUMP_CANCEL_AT_PERIOD_END = 0.35
RULE_BUMP_FAILED_30D = 0.20  # per failed payment in 30 days, at most two
RULE_BUMP_FAILED_90D = 0.05  # per failed payment in 90 days, at most two
RULE_CAP = 0.95

# A feature's contribution must reach this to be given as a reason (log-odds for the logistic
# model, probability for gradient boosting and the rule).
MIN_LOGIT_REASON = 0.1
MIN_PROBABILITY_REASON = 0.01
MAX_REASONS = 3
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


def _reasons(
    x: pd.DataFrame, contributions: np.ndarray, threshold: float, raises_high: np.ndarray
) -> list[str]:
    """Per row, the features with the largest positive contributions, in plain words."""
    out = []
    values = x.to_numpy()
    for i in range(len(x)):
        order = np.argsort(-contributions[i], kind="stable")
        picked = [j for j in order if contributions[i, j] >= threshold]
        if (
            FAILED_30D in picked
            and FAILED_90D in picked
            and values[i, FAILED_90D] <= values[i, FAILED_30D]
        ):
            picked.remove(FAILED_90D)  # the same failures, said once
        words = [
            describe(FEATURES[j], values[i, j], bool(raises_high[i, j]))
            for j in picked[:MAX_REASONS]
        ]
        out.append("; ".join(words) if words else NO_REASON)
    return out


# -- the model ----------------------------------------------------------------------------------


@dataclass
class ChurnModel:
    """A fitted churn model. ``chosen``: "logistic", "gradient_boosting" or "rule". ``no_signal``:
    the holdout showed no ranking better than chance; do not publish its scores as risk."""

    chosen: str
    metrics: dict[str, Any]
    no_signal: bool = False
    reason: str | None = None
    estimator: Any = None
    medians: pd.Series | None = None
    base_rate: float = RULE_DEFAULT_BASE_RATE
    extra: dict[str, Any] = field(default_factory=dict)

    def probability(self, features: pd.DataFrame) -> np.ndarray:
        """The probability of an end within 30 days for each row of membership facts."""
        return self._probability(feature_matrix(features))

    def _probability(self, x: pd.DataFrame) -> np.ndarray:
        if self.chosen == "rule":
            return _rule_probability(x, self.base_rate)
        return self.estimator.predict_proba(x)[:, 1]

    def _contributions(
        self, x: pd.DataFrame, p: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Per row and feature, how much it raises the risk; the reason threshold; and whether
        the feature raises it by being high (for the wording)."""
        if self.chosen == "logistic":
            scaler, logistic = self.estimator[0], self.estimator[-1]
            z = (x.to_numpy() - scaler.mean_) / scaler.scale_
            contributions = z * logistic.coef_[0]
            return contributions, MIN_LOGIT_REASON, np.broadcast_to(logistic.coef_[0] > 0, z.shape)
        medians = self.medians if self.medians is not None else x.median()
        contributions = np.zeros(x.shape)
        for j, feature in enumerate(FEATURES):
            swapped = x.copy()
            swapped[feature] = medians[feature]
            contributions[:, j] = p - self._probability(swapped)
        raises_high = x.to_numpy() > medians.to_numpy()
        return contributions, MIN_PROBABILITY_REASON, raises_high

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """``churn_risk`` (0–100, the probability in percent, rounded) and ``reasons`` per row of
        membership facts (pass the active memberships), on the same index."""
        x = feature_matrix(features)
        if x.empty:
            return pd.DataFrame(
                {"churn_risk": pd.Series(dtype="int64"), "reasons": pd.Series(dtype=object)}
            )
        p = self._probability(x)
        contributions, threshold, raises_high = self._contributions(x, p)
        return pd.DataFrame(
            {
                "churn_risk": np.clip(np.rint(p * 100), 0, 100).astype("int64"),
                "reasons": _reasons(x, contributions, threshold, raises_high),
            },
            index=features.index,
        )


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
    positives = int(rows[LABEL].sum()) if len(rows) else 0
    base = positives / len(rows) if len(rows) and positives else RULE_DEFAULT_BASE_RATE
    metrics = {
        "rows": len(rows),
        "positives": positives,
        "snapshots": int(rows["snapshot"].nunique()) if len(rows) else 0,
        "roc_auc": None,
        "brier": None,
        "baseline_auc": None,
        "calibration": [],
        "train_window": None,
        "holdout_window": None,
        "chosen": "rule",
    }
    # The rule's wording: a bump is a reason when it applies (medians 0 for the flag and failures).
    medians = pd.Series(0.0, index=FEATURES)
    return ChurnModel(
        chosen="rule", metrics=metrics, reason=reason, base_rate=base, medians=medians
    )


def _candidates() -> dict[str, Any]:
    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000)),
        "gradient_boosting": HistGradientBoostingClassifier(
            max_iter=150,
            learning_rate=0.08,
            max_leaf_nodes=15,
            min_samples_leaf=100,
            l2_regularization=1.0,
            monotonic_cst=MONOTONIC,
            early_stopping=False,
            random_state=RANDOM_STATE,
        ),
    }


def _subsample(x: pd.DataFrame, y: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    if len(x) <= MAX_FIT_ROWS:
        return x, y
    picked = x.sample(n=MAX_FIT_ROWS, random_state=RANDOM_STATE).index
    return x.loc[picked], y.loc[picked]


def _calibration(y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """Predicted against observed end rate per decile of the predicted probability."""
    bins = pd.qcut(pd.Series(p).rank(method="first"), 10, labels=False)
    frame = pd.DataFrame({"bin": bins.to_numpy(), "p": p, "y": y})
    return [
        {
            "decile": int(b) + 1,
            "rows": len(g),
            "predicted": round(float(g["p"].mean()), 4),
            "observed": round(float(g["y"].mean()), 4),
        }
        for b, g in frame.groupby("bin")
    ]


def _window(snapshots: pd.Series) -> tuple[str, str]:
    return snapshots.min().isoformat(), snapshots.max().isoformat()


def train(rows: pd.DataFrame, *, now: dt.datetime | pd.Timestamp) -> ChurnModel:
    """Fit the churn model on ``training_rows`` (see the module docstring and docs/health.md)."""
    horizon = _utc(now) - pd.Timedelta(days=LABEL_DAYS)
    rows = rows[rows["snapshot"] <= horizon] if len(rows) else rows
    positives = int(rows[LABEL].sum()) if len(rows) else 0
    snapshots = sorted(rows["snapshot"].unique()) if len(rows) else []
    if len(snapshots) < MIN_SNAPSHOTS:
        return rule_model(rows, f"{len(snapshots)} snapshot(s) of history, {MIN_SNAPSHOTS} needed")
    if positives < MIN_POSITIVES:
        return rule_model(
            rows, f"{positives} ended memberships in the history, {MIN_POSITIVES} needed"
        )

    held = max(1, math.ceil(len(snapshots) * HOLDOUT_SHARE))
    cut = snapshots[-held]
    fit_rows, holdout = rows[rows["snapshot"] < cut], rows[rows["snapshot"] >= cut]
    y_fit, y_hold = fit_rows[LABEL], holdout[LABEL].to_numpy()
    if y_fit.nunique() < 2 or len(set(y_hold)) < 2:
        return rule_model(rows, "the training or holdout window has no ended membership")
    x_fit, x_hold = feature_matrix(fit_rows), feature_matrix(holdout)

    # The best single-feature rule: each feature alone, in the direction the training window shows.
    baseline = {}
    for feature in FEATURES:
        sign = 1.0 if roc_auc_score(y_fit, x_fit[feature]) >= 0.5 else -1.0
        baseline[feature] = float(roc_auc_score(y_hold, sign * x_hold[feature]))
    baseline_feature = max(baseline, key=baseline.get)

    scores: dict[str, float] = {}
    fitted: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    xs, ys = _subsample(x_fit, y_fit)
    for name, estimator in _candidates().items():
        estimator.fit(xs, ys)
        predictions[name] = estimator.predict_proba(x_hold)[:, 1]
        scores[name] = float(roc_auc_score(y_hold, predictions[name]))
        fitted[name] = estimator
    chosen = max(scores, key=scores.get)
    auc, p_hold = scores[chosen], predictions[chosen]
    no_signal = (
        abs(auc - 0.5) <= NO_SIGNAL_MARGIN or auc < baseline[baseline_feature] - BASELINE_NOISE
    )

    x_all, y_all = _subsample(feature_matrix(rows), rows[LABEL])
    final = _candidates()[chosen].fit(x_all, y_all)
    metrics = {
        "roc_auc": auc,
        "candidate_auc": scores,
        "brier": float(brier_score_loss(y_hold, p_hold)),
        "baseline_auc": baseline[baseline_feature],
        "baseline_feature": baseline_feature,
        "baseline_aucs": baseline,
        "calibration": _calibration(y_hold, p_hold),
        "positives": positives,
        "rows": len(rows),
        "holdout_rows": len(holdout),
        "holdout_positives": int(y_hold.sum()),
        "snapshots": len(snapshots),
        "train_window": _window(fit_rows["snapshot"]),
        "holdout_window": _window(holdout["snapshot"]),
        "chosen": chosen,
        "no_signal": no_signal,
    }
    reason = None
    if no_signal:
        reason = (
            f"holdout AUC {auc:.3f}: within {NO_SIGNAL_MARGIN} of chance"
            if abs(auc - 0.5) <= NO_SIGNAL_MARGIN
            else f"holdout AUC {auc:.3f} below the best single feature ({baseline[baseline_feature]:.3f})"
        )
    return ChurnModel(
        chosen=chosen,
        metrics=metrics,
        no_signal=no_signal,
        reason=reason,
        estimator=final,
        medians=feature_matrix(rows).median(),
        base_rate=positives / len(rows),
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
