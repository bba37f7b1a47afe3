"""What the churn risk and the lead score share: how a model is fitted and validated on point-in-time
snapshots, and how its scores are explained (docs/health.md).

``fit`` takes training rows (one per subject and ``snapshot``, with a 0/1 label) and a ``Task`` (its
features, label, monotonic constraints and minimum of positives). It holds out the latest quarter
of the snapshots, fits a logistic regression and gradient boosting on the earlier ones, keeps the
one with the higher holdout ROC AUC, compares it with the best single feature, flags ``no_signal``
when it ranks no better than chance (or than that feature), and refits it on every row. Too little
history returns ``Thin`` with the cause, and the caller falls back to its documented rule.

``ScoredModel`` is the fitted model's common shape: a probability per row and plain-word reasons
naming the features that push it up most. Subclasses give the features, the rule and the words.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from whop_pipeline.health.facts import LABEL_DAYS, _utc

HOLDOUT_SHARE = 0.25
MIN_SNAPSHOTS = 2
# Holdout AUC within this of 0.5 is chance: no signal.
NO_SIGNAL_MARGIN = 0.05
# A model this far below the best single-feature rule on the holdout is not trusted either.
BASELINE_NOISE = 0.02
# Rows beyond this are subsampled (fixed seed) for fitting; metrics use every holdout row.
MAX_FIT_ROWS = 200_000
RANDOM_STATE = 0

# A feature's contribution must reach this to be given as a reason (log-odds for the logistic
# model, probability for gradient boosting and the rule).
MIN_LOGIT_REASON = 0.1
MIN_PROBABILITY_REASON = 0.01
MAX_REASONS = 3


@dataclass(frozen=True)
class Task:
    """What one model learns. ``matrix`` turns rows (or facts to score) into ``features``;
    ``monotonic`` constrains gradient boosting per feature (1: may only raise the probability,
    -1: only lower it, 0: free); ``positive``/``positives`` name a positive row in the reasons
    for falling back to the rule (e.g. "ended membership", "ended memberships")."""

    features: list[str]
    label: str
    monotonic: list[int]
    matrix: Callable[[pd.DataFrame], pd.DataFrame]
    min_positives: int
    positive: str
    positives: str


@dataclass
class Thin:
    """Too little history to fit: the rows within the horizon and why."""

    rows: pd.DataFrame
    reason: str


@dataclass
class Fit:
    chosen: str
    metrics: dict[str, Any]
    no_signal: bool
    reason: str | None
    estimator: Any
    medians: pd.Series
    base_rate: float


def candidates(monotonic: list[int]) -> dict[str, Any]:
    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000)),
        "gradient_boosting": HistGradientBoostingClassifier(
            max_iter=150,
            learning_rate=0.08,
            max_leaf_nodes=15,
            min_samples_leaf=100,
            l2_regularization=1.0,
            monotonic_cst=monotonic,
            early_stopping=False,
            random_state=RANDOM_STATE,
        ),
    }


def subsample(x: pd.DataFrame, y: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    if len(x) <= MAX_FIT_ROWS:
        return x, y
    picked = x.sample(n=MAX_FIT_ROWS, random_state=RANDOM_STATE).index
    return x.loc[picked], y.loc[picked]


def calibration(y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    """Predicted against observed positive rate per decile of the predicted probability."""
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


def rule_metrics(rows: pd.DataFrame, label: str) -> dict[str, Any]:
    """A rule's metrics: counts only (it is not validated), with every key a fitted model has."""
    positives = int(rows[label].sum()) if len(rows) else 0
    return {
        "rows": len(rows),
        "positives": positives,
        "snapshots": int(rows["snapshot"].nunique()) if len(rows) else 0,
        "roc_auc": None,
        "brier": None,
        "baseline_auc": None,
        "baseline_feature": None,
        "calibration": [],
        "train_window": None,
        "holdout_window": None,
        "chosen": "rule",
        "no_signal": False,
    }


def observed_rate(rows: pd.DataFrame, label: str, default: float) -> float:
    """The positive rate of the rows, or ``default`` when they show no positive."""
    positives = int(rows[label].sum()) if len(rows) else 0
    return positives / len(rows) if positives else default


def fit(rows: pd.DataFrame, *, now: dt.datetime | pd.Timestamp, task: Task) -> Fit | Thin:
    """Fit ``task`` on training rows (module docstring); ``Thin`` when the history is too short."""
    horizon = _utc(now) - pd.Timedelta(days=LABEL_DAYS)
    rows = rows[rows["snapshot"] <= horizon] if len(rows) else rows
    positives = int(rows[task.label].sum()) if len(rows) else 0
    snapshots = sorted(rows["snapshot"].unique()) if len(rows) else []
    if len(snapshots) < MIN_SNAPSHOTS:
        return Thin(rows, f"{len(snapshots)} snapshot(s) of history, {MIN_SNAPSHOTS} needed")
    if positives < task.min_positives:
        return Thin(
            rows, f"{positives} {task.positives} in the history, {task.min_positives} needed"
        )

    held = max(1, math.ceil(len(snapshots) * HOLDOUT_SHARE))
    cut = snapshots[-held]
    fit_rows, holdout = rows[rows["snapshot"] < cut], rows[rows["snapshot"] >= cut]
    y_fit, y_hold = fit_rows[task.label], holdout[task.label].to_numpy()
    if y_fit.nunique() < 2 or len(set(y_hold)) < 2:
        return Thin(rows, f"the training or holdout window has no {task.positive}")
    x_fit, x_hold = task.matrix(fit_rows), task.matrix(holdout)

    # The best single-feature rule: each feature alone, in the direction the training window shows.
    baseline = {}
    for feature in task.features:
        sign = 1.0 if roc_auc_score(y_fit, x_fit[feature]) >= 0.5 else -1.0
        baseline[feature] = float(roc_auc_score(y_hold, sign * x_hold[feature]))
    baseline_feature = max(baseline, key=baseline.get)

    scores: dict[str, float] = {}
    predictions: dict[str, np.ndarray] = {}
    xs, ys = subsample(x_fit, y_fit)
    for name, estimator in candidates(task.monotonic).items():
        estimator.fit(xs, ys)
        predictions[name] = estimator.predict_proba(x_hold)[:, 1]
        scores[name] = float(roc_auc_score(y_hold, predictions[name]))
    chosen = max(scores, key=scores.get)
    auc, p_hold = scores[chosen], predictions[chosen]
    chance = abs(auc - 0.5) <= NO_SIGNAL_MARGIN
    no_signal = chance or auc < baseline[baseline_feature] - BASELINE_NOISE

    x_all = task.matrix(rows)
    final = candidates(task.monotonic)[chosen].fit(*subsample(x_all, rows[task.label]))
    metrics = {
        "roc_auc": auc,
        "candidate_auc": scores,
        "brier": float(brier_score_loss(y_hold, p_hold)),
        "baseline_auc": baseline[baseline_feature],
        "baseline_feature": baseline_feature,
        "baseline_aucs": baseline,
        "calibration": calibration(y_hold, p_hold),
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
            if chance
            else f"holdout AUC {auc:.3f} below the best single feature ({baseline[baseline_feature]:.3f})"
        )
    return Fit(
        chosen=chosen,
        metrics=metrics,
        no_signal=no_signal,
        reason=reason,
        estimator=final,
        medians=x_all.median(),
        base_rate=positives / len(rows),
    )


# -- scores and reasons -------------------------------------------------------------------------


@dataclass
class ScoredModel:
    """A fitted model (or its rule). ``chosen``: "logistic", "gradient_boosting" or "rule".
    ``no_signal``: the holdout showed no ranking better than chance; do not publish its scores.
    Plain data and a scikit-learn estimator, so it pickles; subclasses set the class-level parts."""

    FEATURES: ClassVar[list[str]]
    SCORE: ClassVar[str]  # the score's column
    NO_REASON: ClassVar[str]
    # (first, second): name the second only when it exceeds the first (the same events said once).
    SAID_ONCE: ClassVar[tuple[tuple[str, str], ...]] = ()

    chosen: str
    metrics: dict[str, Any]
    no_signal: bool = False
    reason: str | None = None
    estimator: Any = None
    medians: pd.Series | None = None
    base_rate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def rule_probability(self, x: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def describe(self, feature: str, value: float, raises_when_high: bool) -> str:
        raise NotImplementedError

    def probability(self, features: pd.DataFrame) -> np.ndarray:
        """The model's probability for each row of ``features``."""
        return self._probability(self.matrix(features))

    def _probability(self, x: pd.DataFrame) -> np.ndarray:
        if self.chosen == "rule":
            return self.rule_probability(x)
        return self.estimator.predict_proba(x)[:, 1]

    def _contributions(
        self, x: pd.DataFrame, p: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Per row and feature, how much it raises the probability; the reason threshold; and
        whether the feature raises it by being high (for the wording)."""
        if self.chosen == "logistic":
            scaler, logistic = self.estimator[0], self.estimator[-1]
            z = (x.to_numpy() - scaler.mean_) / scaler.scale_
            contributions = z * logistic.coef_[0]
            return contributions, MIN_LOGIT_REASON, np.broadcast_to(logistic.coef_[0] > 0, z.shape)
        medians = self.medians if self.medians is not None else x.median()
        contributions = np.zeros(x.shape)
        for j, feature in enumerate(self.FEATURES):
            swapped = x.copy()
            swapped[feature] = medians[feature]
            contributions[:, j] = p - self._probability(swapped)
        raises_high = x.to_numpy() > medians.to_numpy()
        return contributions, MIN_PROBABILITY_REASON, raises_high

    def _reasons(
        self, x: pd.DataFrame, contributions: np.ndarray, threshold: float, raises_high: np.ndarray
    ) -> list[str]:
        """Per row, the features with the largest positive contributions, in plain words."""
        out = []
        values = x.to_numpy()
        pairs = [(self.FEATURES.index(a), self.FEATURES.index(b)) for a, b in self.SAID_ONCE]
        for i in range(len(x)):
            order = np.argsort(-contributions[i], kind="stable")
            picked = [j for j in order if contributions[i, j] >= threshold]
            for first, second in pairs:
                if first in picked and second in picked and values[i, second] <= values[i, first]:
                    picked.remove(second)
            words = [
                self.describe(self.FEATURES[j], values[i, j], bool(raises_high[i, j]))
                for j in picked[:MAX_REASONS]
            ]
            out.append("; ".join(words) if words else self.NO_REASON)
        return out

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """The score (0–100, the probability in percent, rounded) and ``reasons`` per row of
        ``features``, on the same index."""
        x = self.matrix(features)
        if x.empty:
            return pd.DataFrame(
                {self.SCORE: pd.Series(dtype="int64"), "reasons": pd.Series(dtype=object)},
                index=features.index[:0],
            )
        p = self._probability(x)
        contributions, threshold, raises_high = self._contributions(x, p)
        return pd.DataFrame(
            {
                self.SCORE: np.clip(np.rint(p * 100), 0, 100).astype("int64"),
                "reasons": self._reasons(x, contributions, threshold, raises_high),
            },
            index=features.index,
        )
