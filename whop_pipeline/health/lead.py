"""Lead score: how likely a known person without an active paid membership is to start paying for
one in the next 30 days, learned from the account's own history (docs/health.md#lead-score).

Definitions (all at a moment ``as_of``):

- A *charge of money*: a payment paid by then (money moved, refunded or not) with a total above 0.
- A *paid membership*: a membership with at least one charge of money on it paid by ``as_of``
  (a trial or free membership is not paid until its first charge; a one-time pass is, once bought).
- *Candidates*: the people known by ``as_of`` (a membership or payment of theirs created by then)
  none of whose paid memberships is active then (``membership_facts``' ``active_at``).
- The label ``starts_within_30d``: a charge of money on one of the person's memberships (renewing
  or one-time) paid in ``(as_of, as_of + 30 days]``. A candidate holds no active paid membership,
  so such a charge starts one: a trial's first charge, a new purchase or a lapsed membership paid
  again. A one-off purchase without a membership is a sale, not a membership: it adds to the
  lifetime value but does not count as a start.

``lead_features`` gives the candidates' facts (only what was known at ``as_of``), ``lead_labels``
their label, ``lead_training_rows`` both at each snapshot, ``train_lead`` the model (the same fitting
as the churn risk, ``fitting.fit``) or, on a thin history, a fixed rule (``chosen == "rule"``).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from whop_pipeline.health import fitting
from whop_pipeline.health.facts import LABEL_DAYS, NEVER_STARTED_STATUSES, _utc
from whop_pipeline.health.model import MODEL_FORMAT

LABEL = "starts_within_30d"
FAILED_DAYS = 90
# "Never" for the days since a paid membership ended; also the cap on older ends.
NEVER_DAYS = 730
FACT_COLUMNS = [
    "days_known",
    "paid_membership_before",
    "days_since_paid_end",
    "lifetime_value_usd",
    "trial_memberships",
    "free_memberships",
    "failed_payments_90d",
]
FEATURES = [
    "log_days_known",
    "paid_membership_before",
    "log_days_since_paid_end",
    "log_lifetime_value_usd",
    "trial_memberships",
    "free_memberships",
    "failed_payments_90d",
]
# Gradient boosting: a trial or free membership may only raise the score, time since the last paid
# membership ended only lower it (never having had one counts as the longest time).
MONOTONIC = [0, 0, -1, 0, 1, 1, 0]
MIN_POSITIVES = 30

# The thin-history rule: the base rate plus fixed bumps, capped.
RULE_DEFAULT_BASE_RATE = 0.02
RECENT_LAPSE_DAYS = 30
RULE_BUMP_RECENT_LAPSE = 0.12  # a paid membership ended in the last 30 days
RULE_BUMP_PRIOR_PAYER = 0.04  # paid for a membership before, longer ago
RULE_BUMP_TRIAL = 0.25  # on a trial that has not charged yet
RULE_BUMP_FREE = 0.03  # on a free (or not yet charged) membership
RULE_BUMP_FAILED_90D = 0.05  # per failed payment in 90 days, at most two: they tried to pay
RULE_CAP = 0.90
NO_REASON = "no strong buying signal"


# -- facts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """The frames reduced once to what every snapshot reads."""

    memberships: pd.DataFrame  # id, person_key, created_at, ended_at, started, trial
    payments: pd.DataFrame  # with a person: paid, failed, their times, USD amounts as floats
    charges: pd.DataFrame  # charges of money: person_key, membership_id, created_at, paid_at


def _prepare(memberships: pd.DataFrame, payments: pd.DataFrame, plans: pd.DataFrame) -> _Prepared:
    trial_plans = {
        plan
        for plan, days in zip(plans["id"], plans["trial_period_days"], strict=True)
        if days is not None and not pd.isna(days) and days > 0
    }
    m = memberships[memberships["person_key"].notna()]
    m = pd.DataFrame(
        {
            "id": m["id"],
            "person_key": m["person_key"],
            "created_at": m["created_at"],
            "ended_at": m["ended_at"],
            "started": ~m["status"].isin(NEVER_STARTED_STATUSES),
            "trial": m["plan_id"].isin(trial_plans),
        }
    )
    # Every charge of money, whoever the payment names: a charge on a membership belongs to the
    # membership's person (it makes the membership paid, and its start is theirs).
    money = np.array([t is not None and t > 0 for t in payments["total"]], dtype=bool)
    charges = payments.loc[
        payments["paid"].astype(bool).to_numpy() & money,
        ["person_key", "membership_id", "created_at", "paid_at"],
    ]
    owner = charges["membership_id"].map(m.set_index("id")["person_key"])
    charges = charges.assign(person_key=owner.where(owner.notna(), charges["person_key"]))

    def usd(values: pd.Series) -> np.ndarray:
        return np.array([float(v) if v is not None else 0.0 for v in values], dtype=float)

    p = payments[payments["person_key"].notna()]
    p = pd.DataFrame(
        {
            "person_key": p["person_key"],
            "paid": p["paid"].astype(bool).to_numpy(),
            "failed": p["failed"].astype(bool).to_numpy(),
            "created_at": p["created_at"],
            "paid_at": p["paid_at"],
            "failed_at": p["failed_at"],
            "refunded_at": p["refunded_at"],
            "usd_amount": usd(p["usd_amount"]),
            "usd_refunded": usd(p["usd_refunded"]),
        }
    )
    return _Prepared(m, p, charges)


def _at(prepared: _Prepared, as_of: pd.Timestamp) -> pd.DataFrame:
    """The candidates' facts at ``as_of`` (``lead_features``)."""
    m, p = prepared.memberships, prepared.payments
    m = m[m["created_at"] <= as_of]
    p = p[p["created_at"] <= as_of]
    charges = prepared.charges
    charges = charges[(charges["created_at"] <= as_of) & (charges["paid_at"] <= as_of)]
    ended = m["ended_at"].notna() & (m["ended_at"] <= as_of)
    m = m.assign(
        active=m["started"] & ~ended,
        ended=ended,
        paid=m["id"].isin(set(charges["membership_id"].dropna())),
    )
    first_seen = pd.concat(
        [m.groupby("person_key")["created_at"].min(), p.groupby("person_key")["created_at"].min()]
    )
    first_seen = first_seen.groupby(level=0).min()
    paying = set(m.loc[m["active"] & m["paid"], "person_key"])
    people = first_seen.index.difference(pd.Index(sorted(paying), dtype=object))
    people = pd.Index(sorted(people), name="person_key", dtype=object)

    by_person = m.groupby("person_key")
    lapsed = m[m["paid"] & m["ended"]].groupby("person_key")["ended_at"].max()
    unpaid = m[m["active"] & ~m["paid"]]
    paid = p[p["paid"] & (p["paid_at"] <= as_of)]
    refunded = paid[paid["refunded_at"].notna() & (paid["refunded_at"] <= as_of)]
    value = (
        paid.groupby("person_key")["usd_amount"]
        .sum()
        .sub(refunded.groupby("person_key")["usd_refunded"].sum(), fill_value=0.0)
    )
    window = p["failed"] & (p["created_at"] > as_of - pd.Timedelta(days=FAILED_DAYS))
    failed = p[window & (p["failed_at"] <= as_of)].groupby("person_key").size()
    days_since_end = (as_of - lapsed).dt.total_seconds() / 86_400
    facts = pd.DataFrame(
        {
            "days_known": (as_of - first_seen.reindex(people)).dt.total_seconds() / 86_400,
            "paid_membership_before": by_person["paid"].any().reindex(people, fill_value=False),
            "days_since_paid_end": days_since_end.reindex(people),
            "lifetime_value_usd": value.reindex(people, fill_value=0.0).round(2),
            "trial_memberships": unpaid[unpaid["trial"]].groupby("person_key").size(),
            "free_memberships": unpaid[~unpaid["trial"]].groupby("person_key").size(),
            "failed_payments_90d": failed,
        },
        index=people,
        columns=FACT_COLUMNS,
    )
    for column in ("trial_memberships", "free_memberships", "failed_payments_90d"):
        facts[column] = facts[column].reindex(people).fillna(0).astype("int64")
    facts["paid_membership_before"] = facts["paid_membership_before"].astype(bool)
    facts["days_known"] = facts["days_known"].astype(float)
    facts["days_since_paid_end"] = facts["days_since_paid_end"].astype(float)
    facts["lifetime_value_usd"] = facts["lifetime_value_usd"].astype(float)
    return facts


def lead_features(
    memberships: pd.DataFrame,
    payments: pd.DataFrame,
    plans: pd.DataFrame,
    as_of: dt.datetime | pd.Timestamp | str,
) -> pd.DataFrame:
    """The candidates at ``as_of`` (module docstring), indexed by ``person_key``, with what was
    known of them then: ``days_known`` (since their first membership or payment was created),
    ``paid_membership_before``, ``days_since_paid_end`` (since their last paid membership ended;
    NaN when none has), ``lifetime_value_usd`` (money paid less refunds, as ``person_facts``),
    ``trial_memberships`` and ``free_memberships`` (active memberships not charged yet, on a plan
    with a trial or not) and ``failed_payments_90d``."""
    return _at(_prepare(memberships, payments, plans), _utc(as_of))


def _labels(prepared: _Prepared, people: pd.Index, as_of: pd.Timestamp) -> pd.Series:
    charges = prepared.charges
    window = (charges["paid_at"] > as_of) & (
        charges["paid_at"] <= as_of + pd.Timedelta(days=LABEL_DAYS)
    )
    starters = set(charges.loc[window & charges["membership_id"].notna(), "person_key"])
    return pd.Series(people.isin(starters).astype("int64"), index=people, name=LABEL)


def lead_labels(
    memberships: pd.DataFrame,
    payments: pd.DataFrame,
    plans: pd.DataFrame,
    as_of: dt.datetime | pd.Timestamp | str,
) -> pd.DataFrame:
    """The training label, from data after ``as_of``: ``starts_within_30d`` per candidate at
    ``as_of`` (same index as ``lead_features``). Near the data's end the window is censored."""
    prepared, at = _prepare(memberships, payments, plans), _utc(as_of)
    people = _at(prepared, at).index
    return _labels(prepared, people, at).to_frame()


def lead_training_rows(
    memberships: pd.DataFrame,
    payments: pd.DataFrame,
    plans: pd.DataFrame,
    snapshots: list[dt.datetime | pd.Timestamp],
) -> pd.DataFrame:
    """One row per candidate at each snapshot: ``person_key``, ``snapshot``, the facts at the
    snapshot and the label ``starts_within_30d`` (from the 30 days after it)."""
    prepared = _prepare(memberships, payments, plans)
    parts = []
    for snapshot in snapshots:
        at = _utc(snapshot)
        facts = _at(prepared, at)
        if facts.empty:
            continue
        part = facts.join(_labels(prepared, facts.index, at))
        part.insert(0, "snapshot", at)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["person_key", "snapshot", *FACT_COLUMNS, LABEL])
    rows = pd.concat(parts).reset_index()
    rows[LABEL] = rows[LABEL].astype("int64")
    return rows


def lead_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs from lead facts (a ``lead_training_rows`` or ``lead_features`` frame)."""
    since_end = frame["days_since_paid_end"].astype(float).fillna(NEVER_DAYS)
    return pd.DataFrame(
        {
            "log_days_known": np.log1p(frame["days_known"].astype(float).clip(lower=0)),
            "paid_membership_before": frame["paid_membership_before"].astype(float),
            "log_days_since_paid_end": np.log1p(since_end.clip(lower=0, upper=NEVER_DAYS)),
            "log_lifetime_value_usd": np.log1p(frame["lifetime_value_usd"].astype(float).clip(0)),
            "trial_memberships": frame["trial_memberships"].astype(float),
            "free_memberships": frame["free_memberships"].astype(float),
            "failed_payments_90d": frame["failed_payments_90d"].astype(float),
        },
        index=frame.index,
        columns=FEATURES,
    )


# -- the model ----------------------------------------------------------------------------------

TASK = fitting.Task(
    features=FEATURES,
    label=LABEL,
    monotonic=MONOTONIC,
    matrix=lead_matrix,
    min_positives=MIN_POSITIVES,
    positive="started paid membership",
    positives="started paid memberships",
)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(feature: str, value: float, raises_when_high: bool) -> str:
    """A feature's value in plain words, as a reason for the score."""
    if feature == "log_days_known":
        days = _plural(round(math.expm1(value)), "day")
        return f"known for {days}" if raises_when_high else f"known for only {days}"
    if feature == "paid_membership_before":
        return "paid for a membership before" if value else "never paid for a membership"
    if feature == "log_days_since_paid_end":
        days = round(math.expm1(value))
        if days >= NEVER_DAYS:
            return "no paid membership ended in the last two years"
        return f"paid membership ended {_plural(days, 'day')} ago"
    if feature == "log_lifetime_value_usd":
        spent = math.expm1(value)
        if spent < 0.005:
            return "has not spent anything yet"
        return f"spent ${spent:,.2f} so far" if raises_when_high else f"spent only ${spent:,.2f}"
    if feature == "trial_memberships":
        return f"on {_plural(round(value), 'trial')}" if value else "not on a trial"
    if feature == "free_memberships":
        return f"on {_plural(round(value), 'free membership')}" if value else "no free membership"
    if feature == "failed_payments_90d":
        if not value:
            return "no failed payment in 90 days"
        return f"{_plural(round(value), 'failed payment')} in 90 days"
    raise KeyError(feature)


def _rule_probability(x: pd.DataFrame, base_rate: float) -> np.ndarray:
    recent = x["log_days_since_paid_end"].to_numpy() <= math.log1p(RECENT_LAPSE_DAYS)
    payer = x["paid_membership_before"].to_numpy() > 0
    p = (
        base_rate
        + np.where(recent, RULE_BUMP_RECENT_LAPSE, np.where(payer, RULE_BUMP_PRIOR_PAYER, 0.0))
        + RULE_BUMP_TRIAL * (x["trial_memberships"].to_numpy() > 0)
        + RULE_BUMP_FREE * (x["free_memberships"].to_numpy() > 0)
        + RULE_BUMP_FAILED_90D * x["failed_payments_90d"].clip(upper=2).to_numpy()
    )
    return np.clip(p, 0.0, RULE_CAP)


@dataclass
class LeadModel(fitting.ScoredModel):
    """A fitted lead model. ``chosen``: "logistic", "gradient_boosting" or "rule". ``no_signal``:
    the holdout showed no ranking better than chance; do not publish its scores."""

    FEATURES: ClassVar[list[str]] = FEATURES
    SCORE: ClassVar[str] = "lead_score"
    NO_REASON: ClassVar[str] = NO_REASON

    base_rate: float = RULE_DEFAULT_BASE_RATE
    format: int = MODEL_FORMAT

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        return lead_matrix(features)

    def rule_probability(self, x: pd.DataFrame) -> np.ndarray:
        return _rule_probability(x, self.base_rate)

    def describe(self, feature: str, value: float, raises_when_high: bool) -> str:
        return describe(feature, value, raises_when_high)

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """``lead_score`` (0–100, the probability in percent, rounded) and ``reasons`` per row of
        ``lead_features``, on the same index."""
        return super().score(features)


# The rule's neutral values: a bump is a reason when swapping its feature for these removes it.
RULE_NEUTRAL = pd.Series(
    {
        "log_days_known": 0.0,
        "paid_membership_before": 0.0,
        "log_days_since_paid_end": math.log1p(NEVER_DAYS),
        "log_lifetime_value_usd": 0.0,
        "trial_memberships": 0.0,
        "free_memberships": 0.0,
        "failed_payments_90d": 0.0,
    }
)[FEATURES]


def lead_rule_model(rows: pd.DataFrame, reason: str) -> LeadModel:
    """The thin-history rule: the observed start rate (else 2%) plus fixed bumps (module
    constants). Not validated: ``metrics`` hold only counts; ``reason`` says why it is used."""
    return LeadModel(
        chosen="rule",
        metrics=fitting.rule_metrics(rows, LABEL),
        reason=reason,
        base_rate=fitting.observed_rate(rows, LABEL, RULE_DEFAULT_BASE_RATE),
        medians=RULE_NEUTRAL.copy(),
    )


def train_lead(rows: pd.DataFrame, *, now: dt.datetime | pd.Timestamp) -> LeadModel:
    """Fit the lead model on ``lead_training_rows`` (docs/health.md#lead-score)."""
    fitted = fitting.fit(rows, now=now, task=TASK)
    if isinstance(fitted, fitting.Thin):
        return lead_rule_model(fitted.rows, fitted.reason)
    return LeadModel(
        chosen=fitted.chosen,
        metrics=fitted.metrics,
        no_signal=fitted.no_signal,
        reason=fitted.reason,
        estimator=fitted.estimator,
        medians=fitted.medians,
        base_rate=fitted.base_rate,
    )
