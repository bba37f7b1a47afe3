"""Training rows for the churn model: point-in-time snapshots of the renewing memberships.

At snapshots every ``STEP_DAYS`` back from ``LABEL_DAYS`` before the end of the data, the renewing
memberships active then, with their facts at the snapshot (``membership_facts``: nothing after it)
and the label ``ends_within_30d`` (``membership_labels``: the 30 days after it).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from whop_pipeline.health.facts import (
    LABEL_DAYS,
    MEMBERSHIP_FACT_COLUMNS,
    NEVER_STARTED_STATUSES,
    _utc,
    membership_facts,
    membership_labels,
)

STEP_DAYS = 15
LABEL = "ends_within_30d"
FEATURES = [
    "log_tenure_days",
    "cancel_at_period_end_known",
    "failed_payments_30d",
    "failed_payments_90d",
    "monthly_revenue_usd",
]


def data_span(
    memberships: pd.DataFrame, payments: pd.DataFrame
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and the last moment the data shows (creation, payment, failure, end)."""
    times = [memberships["created_at"], payments["created_at"]]
    for frame, column in (
        (memberships, "ended_at"),
        (payments, "paid_at"),
        (payments, "failed_at"),
    ):
        times.append(frame[column])
    stacked = pd.concat([t.dropna() for t in times if len(t.dropna())])
    return stacked.min(), stacked.max()


def snapshot_times(
    now: dt.datetime | pd.Timestamp,
    history_start: dt.datetime | pd.Timestamp,
    step_days: int = STEP_DAYS,
) -> list[pd.Timestamp]:
    """Every ``step_days`` from ``now − 30 days`` back to (not before) ``history_start``, oldest
    first. No snapshot is closer than 30 days to ``now``: its label needs the 30 days after it."""
    latest, start = _utc(now) - pd.Timedelta(days=LABEL_DAYS), _utc(history_start)
    times = []
    moment = latest
    while moment > start:
        times.append(moment)
        moment -= pd.Timedelta(days=step_days)
    return times[::-1]


def _renewing(memberships: pd.DataFrame, plans: pd.DataFrame) -> pd.DataFrame:
    """Memberships not on a one-time plan (a one-time purchase does not renew, so cannot churn)."""
    one_time = set(plans.loc[plans["plan_type"] == "one_time", "id"])
    return memberships[~memberships["plan_id"].isin(one_time)]


def _payments_for(payments: pd.DataFrame, charged: pd.Series, ids: pd.Index, at: pd.Timestamp):
    """The payments ``membership_facts`` reads for memberships ``ids`` at ``at``: their failed ones,
    and per membership and currency only the latest charge of money paid by ``at`` (the revenue
    reads the latest charge, and the rate of the latest one in the price's currency)."""
    mine = payments[payments["membership_id"].isin(ids) & (payments["created_at"] <= at)]
    failed = mine[mine["failed"].astype(bool)]
    paid = mine[charged.reindex(mine.index).to_numpy() & (mine["paid_at"] <= at).to_numpy()]
    latest = (
        paid.sort_values(["paid_at", "id"])
        .groupby(["membership_id", "currency"], sort=False, dropna=False)
        .tail(1)
    )
    return pd.concat([failed, latest]).sort_index()


def training_rows(
    memberships: pd.DataFrame,
    payments: pd.DataFrame,
    plans: pd.DataFrame,
    snapshots: list[dt.datetime | pd.Timestamp],
) -> pd.DataFrame:
    """One row per renewing membership active at each snapshot: ``membership_id``, ``snapshot``,
    the facts at the snapshot and the label ``ends_within_30d`` (from the 30 days after it)."""
    renewing = _renewing(memberships, plans)
    charged = pd.Series(
        [
            bool(p) and t is not None and t > 0
            for p, t in zip(payments["paid"], payments["total"], strict=True)
        ],
        index=payments.index,
        dtype=bool,
    )
    parts = []
    for snapshot in snapshots:
        at = _utc(snapshot)
        ended = renewing["ended_at"].notna() & (renewing["ended_at"] <= at)
        active = renewing[
            (renewing["created_at"] <= at)
            & ~ended
            & ~renewing["status"].isin(NEVER_STARTED_STATUSES)
        ]
        if active.empty:
            continue
        ids = pd.Index(active["id"])
        facts = membership_facts(active, _payments_for(payments, charged, ids, at), plans, at)
        facts = facts[facts["active_at"]]
        labels = membership_labels(active, at)
        part = facts.join(labels)
        part.insert(0, "snapshot", at)
        parts.append(part)
    if not parts:
        columns = ["membership_id", "snapshot", *MEMBERSHIP_FACT_COLUMNS, LABEL]
        return pd.DataFrame(columns=columns)
    rows = pd.concat(parts).reset_index()
    rows[LABEL] = rows[LABEL].astype("int64")
    return rows


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs from membership facts (a ``training_rows`` or ``membership_facts`` frame)."""
    return pd.DataFrame(
        {
            "log_tenure_days": np.log1p(frame["tenure_days"].astype(float).clip(lower=0)),
            "cancel_at_period_end_known": frame["cancel_at_period_end_known"].astype(float),
            "failed_payments_30d": frame["failed_payments_30d"].astype(float),
            "failed_payments_90d": frame["failed_payments_90d"].astype(float),
            "monthly_revenue_usd": [
                float(v) if v is not None else 0.0 for v in frame["monthly_revenue_usd"]
            ],
        },
        index=frame.index,
        columns=FEATURES,
    )
