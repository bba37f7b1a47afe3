"""Customer facts per membership and per person, as of a point in time (docs/health.md).

Mirror payloads → small frames (``memberships_frame``, ``payments_frame``, ``plans_frame``: only the
fields the facts read, parsed once) → facts at ``as_of`` (``membership_facts``, ``person_facts``).
Every fact reads only what was known at ``as_of``; the training label (``membership_labels``) is the
one function that looks past it. Money is ``decimal.Decimal`` throughout, never a float.

The mirror keeps each object's latest state, not its history. What can be dated from it: creation,
payment (``paid_at``), refund (``refunded_at``), cancellation request (``canceled_at``) and the end of
a membership (see ``ended_at``). What cannot: a membership's status or price at an earlier time (a
price change or a plan's new billing period shows in every past ``as_of``), a flag set and later
cleared, a payment that failed and later succeeded (it counts only as succeeded).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.store.tables import RAW_TABLES

Row = dict[str, Any]

DAYS_PER_MONTH = 30
LABEL_DAYS = 30
CENT = Decimal("0.01")
ZERO = Decimal(0)
# Enough digits that price × 30 × usd_total never rounds before the final rounding to the cent.
_DECIMAL = decimal.Context(prec=50, rounding=decimal.ROUND_HALF_EVEN)
# Money moved (``status`` "paid" says so too); refunds are subtracted separately, by their own time.
PAID_SUBSTATUSES = frozenset({"succeeded", "refunded", "partially_refunded", "auto_refunded"})
FAILED_SUBSTATUS = "failed"
ENDED_STATUSES = frozenset({"canceled", "expired", "unresolved"})
NEVER_STARTED_STATUSES = frozenset({"drafted"})
READ_CHUNK = 1_000

MEMBERSHIP_COLUMNS = [
    "id",
    "person_key",
    "plan_id",
    "status",
    "created_at",
    "ended_at",
    "canceled_at",
    "flagged",
    "renewal_amount",
    "renewal_currency",
    "billing_period_days",
]
PAYMENT_COLUMNS = [
    "id",
    "person_key",
    "membership_id",
    "paid",
    "failed",
    "created_at",
    "paid_at",
    "failed_at",
    "refunded_at",
    "currency",
    "total",
    "usd_amount",
    "usd_refunded",
]
PLAN_COLUMNS = ["id", "plan_type", "billing_period_days", "trial_period_days"]
TIME_COLUMNS = ("created_at", "ended_at", "canceled_at", "paid_at", "failed_at", "refunded_at")


def person_key(user_id: str | None, member_id: str | None) -> str | None:
    """The CRM's person key (``crm.mapping.person_key``): the Whop user id, else the member id."""
    return user_id or member_id


def _amount(money: Any) -> Decimal | None:
    if not money or money.get("amount") is None:
        return None
    return Decimal(str(money["amount"]))


def _currency(money: Any, default: str | None = None) -> str | None:
    currency = (money or {}).get("currency") or default
    return currency.lower() if currency else None


def _to_usd(amount: Decimal, usd_total: Decimal, total: Decimal) -> Decimal:
    """``amount`` (in the payment's currency) in USD at the payment's own rate, to the cent."""
    if amount == total:
        return usd_total
    return _DECIMAL.divide(_DECIMAL.multiply(usd_total, amount), total).quantize(
        CENT, context=_DECIMAL
    )


def _frame(rows: list[Row], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def ended_at(membership: Row) -> str | None:
    """When a membership's access ended, from its current state; None while it has not.

    ``expired``: ``expires_at``, else ``current_period_end`` (a scheduled end need not touch
    ``updated_at``). ``canceled``/``unresolved``: the later of ``canceled_at`` and
    ``current_period_end`` (a cancellation at period end stops at the period's end, an immediate one
    at ``canceled_at``), but no later than ``updated_at``, by when the status had changed.
    """
    status = membership.get("status")
    if status not in ENDED_STATUSES:
        return None
    updated = membership.get("updated_at")
    if status == "expired":
        return membership.get("expires_at") or membership.get("current_period_end") or updated
    ends = [t for t in (membership.get("canceled_at"), membership.get("current_period_end")) if t]
    if not ends:
        return updated
    end = max(ends, key=pd.Timestamp)
    return min(end, updated, key=pd.Timestamp) if updated else end


def memberships_frame(memberships: Iterable[Row]) -> pd.DataFrame:
    """Membership payloads → one row each, with the dated facts the features read."""
    rows = []
    for membership in memberships:
        status = membership.get("status")
        end = ended_at(membership)
        canceled = membership.get("canceled_at")
        # Set to cancel at period end now, or it was and the membership has since ended that way.
        flagged = bool(membership.get("cancel_at_period_end")) or status == "canceling"
        if end and canceled and status in ENDED_STATUSES:
            flagged = flagged or pd.Timestamp(canceled) < pd.Timestamp(end)
        price = membership.get("renewal_price")
        rows.append(
            {
                "id": membership["id"],
                "person_key": person_key(membership.get("user_id"), membership.get("member_id")),
                "plan_id": membership.get("plan_id"),
                "status": status,
                "created_at": membership.get("created_at"),
                "ended_at": end,
                "canceled_at": canceled,
                "flagged": flagged,
                "renewal_amount": _amount(price),
                "renewal_currency": _currency(price),
                "billing_period_days": membership.get("billing_period_days"),
            }
        )
    frame = _frame(rows, MEMBERSHIP_COLUMNS)
    frame["flagged"] = frame["flagged"].astype(bool)
    return frame


def payments_frame(payments: Iterable[Row]) -> pd.DataFrame:
    """Payment payloads → one row each: outcome, dates and USD amounts (``usd_total``, else the
    total when it is in USD; a refund in USD at the payment's own ``usd_total``/``total`` rate)."""
    rows = []
    for payment in payments:
        substatus = payment.get("substatus")
        failed = substatus == FAILED_SUBSTATUS
        paid = not failed and (payment.get("status") == "paid" or substatus in PAID_SUBSTATUSES)
        total = _amount(payment.get("total"))
        currency = _currency(payment.get("total"), payment.get("currency"))
        usd_amount = _amount(payment.get("usd_total"))
        if usd_amount is None and currency == "usd":
            usd_amount = total
        refunded = _amount(payment.get("refunded_amount"))
        usd_refunded = refunded_at = None
        if refunded and usd_amount is not None:
            if _currency(payment.get("refunded_amount"), currency) == currency and total:
                usd_refunded = _to_usd(refunded, usd_amount, total)
            elif _currency(payment.get("refunded_amount")) == "usd":
                usd_refunded = refunded
            # No refund time: the last update is the earliest moment it is certainly known.
            refunded_at = payment.get("refunded_at") or payment.get("updated_at")
        user = payment.get("user") or {}
        rows.append(
            {
                "id": payment["id"],
                "person_key": person_key(user.get("id"), payment.get("member_id")),
                "membership_id": payment.get("membership_id"),
                "paid": paid,
                "failed": failed,
                "created_at": payment.get("created_at"),
                "paid_at": (payment.get("paid_at") or payment.get("created_at")) if paid else None,
                "failed_at": (payment.get("last_payment_attempt_at") or payment.get("created_at"))
                if failed
                else None,
                "refunded_at": refunded_at,
                "currency": currency,
                "total": total,
                "usd_amount": usd_amount,
                "usd_refunded": usd_refunded,
            }
        )
    frame = _frame(rows, PAYMENT_COLUMNS)
    for column in ("paid", "failed"):
        frame[column] = frame[column].astype(bool)
    return frame


def plans_frame(plans: Iterable[Row]) -> pd.DataFrame:
    rows = [
        {
            "id": plan["id"],
            "plan_type": plan.get("plan_type"),
            "billing_period_days": plan.get("billing_period"),
            "trial_period_days": plan.get("trial_period_days"),
        }
        for plan in plans
    ]
    return _frame(rows, PLAN_COLUMNS)


def _utc(as_of: dt.datetime | pd.Timestamp | str) -> pd.Timestamp:
    moment = pd.Timestamp(as_of)
    if moment.tzinfo is None:
        raise ValueError(f"naive as_of {as_of!r}: facts are computed at an aware UTC moment")
    return moment.tz_convert("UTC")


def _failed_counts(payments: pd.DataFrame, as_of: pd.Timestamp, days: int, by: str) -> pd.Series:
    """Failed payments created in ``(as_of − days, as_of]`` whose failure was known by ``as_of``."""
    window = (payments["created_at"] > as_of - pd.Timedelta(days=days)) & (
        payments["created_at"] <= as_of
    )
    failed = payments[payments["failed"].astype(bool) & window & (payments["failed_at"] <= as_of)]
    return failed.groupby(by).size()


def _paid_by(payments: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Payments whose money had moved by ``as_of`` (refunded ones included)."""
    return payments[payments["paid"].astype(bool) & (payments["paid_at"] <= as_of)]


def _charged(paid: pd.DataFrame) -> pd.DataFrame:
    """Paid payments that charged something (a trial's zero charge is not a payment of money)."""
    mask = [total is not None and total > 0 for total in paid["total"]]
    return paid[pd.Series(mask, index=paid.index, dtype=bool)]


def _monthly_usd(membership: Row, plan: Row | None, latest_paid: list[Row]) -> Decimal:
    """The renewal price per 30 days in USD, to the cent; 0 for one-time plans and memberships
    nothing has been paid for yet (a trial counts from its first paid charge)."""
    amount, currency = membership["renewal_amount"], membership["renewal_currency"]
    period = membership["billing_period_days"]
    if period is None or pd.isna(period):
        period = plan.get("billing_period_days") if plan else None
    one_time = plan is not None and plan.get("plan_type") == "one_time"
    if one_time or amount is None or period is None or pd.isna(period) or not latest_paid:
        return ZERO
    numerator = _DECIMAL.multiply(amount, Decimal(DAYS_PER_MONTH))
    denominator = Decimal(str(period))
    if currency != "usd":
        # The rate of the membership's latest charge in the price's currency, known at as_of.
        rate = next((p for p in latest_paid if p["currency"] == currency and p["total"]), None)
        if rate is None or rate["usd_amount"] is None:
            return ZERO
        numerator = _DECIMAL.multiply(numerator, rate["usd_amount"])
        denominator = _DECIMAL.multiply(denominator, rate["total"])
    return _DECIMAL.divide(numerator, denominator).quantize(CENT, context=_DECIMAL)


MEMBERSHIP_FACT_COLUMNS = [
    "person_key",
    "active_at",
    "tenure_days",
    "cancel_at_period_end_known",
    "failed_payments_30d",
    "failed_payments_90d",
    "monthly_revenue_usd",
]


def membership_facts(
    memberships: pd.DataFrame,
    payments: pd.DataFrame,
    plans: pd.DataFrame,
    as_of: dt.datetime | pd.Timestamp | str,
) -> pd.DataFrame:
    """Facts of each membership created by ``as_of``, indexed by membership id."""
    as_of = _utc(as_of)
    known = memberships[memberships["created_at"] <= as_of].set_index("id")
    payments = payments[payments["created_at"] <= as_of]
    ended = known["ended_at"].notna() & (known["ended_at"] <= as_of)
    active = ~known["status"].isin(NEVER_STARTED_STATUSES) & ~ended
    until = known["ended_at"].where(ended, as_of)
    flag_known = known["flagged"].astype(bool) & (known["canceled_at"] <= as_of)

    paid = _charged(_paid_by(payments, as_of))
    latest: dict[str, list[Row]] = {}
    for row in paid.sort_values(["paid_at", "id"], ascending=False).to_dict("records"):
        if row["membership_id"]:
            latest.setdefault(row["membership_id"], []).append(row)
    plan_rows = plans.set_index("id").to_dict("index")
    revenue = [
        _monthly_usd(row, plan_rows.get(row["plan_id"]), latest.get(key, [])) if is_active else ZERO
        for (key, row), is_active in zip(known.to_dict("index").items(), active, strict=True)
    ]
    facts = pd.DataFrame(
        {
            "person_key": known["person_key"],
            "active_at": active.astype(bool),
            "tenure_days": (until - known["created_at"]).dt.total_seconds() / 86_400,
            "cancel_at_period_end_known": (active & flag_known).astype(bool),
            "failed_payments_30d": _failed_counts(payments, as_of, 30, "membership_id"),
            "failed_payments_90d": _failed_counts(payments, as_of, 90, "membership_id"),
            "monthly_revenue_usd": pd.Series(revenue, index=known.index, dtype=object),
        },
        index=known.index,
        columns=MEMBERSHIP_FACT_COLUMNS,
    )
    for column in ("failed_payments_30d", "failed_payments_90d"):
        facts[column] = facts[column].fillna(0).astype("int64")
    facts.index.name = "membership_id"
    return facts


def membership_labels(memberships: pd.DataFrame, as_of: dt.datetime | pd.Timestamp | str):
    """The training label, from data after ``as_of``: 1 when a membership created by ``as_of``
    ended in ``(as_of, as_of + 30 days]``, else 0. Near the data's end the window is censored."""
    as_of = _utc(as_of)
    known = memberships[memberships["created_at"] <= as_of].set_index("id")
    end = known["ended_at"]
    label = (end > as_of) & (end <= as_of + pd.Timedelta(days=LABEL_DAYS))
    labels = pd.DataFrame({"ends_within_30d": label.astype("int64")}, index=known.index)
    labels.index.name = "membership_id"
    return labels


PERSON_FACT_COLUMNS = [
    "lifetime_value_usd",
    "monthly_revenue_usd",
    "customer_since",
    "last_payment_at",
    "failed_payments_90d",
    "active_memberships",
    "cancel_at_period_end_memberships",
]


def _decimal_sums(keys: pd.Series, values: pd.Series) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = {}
    for key, value in zip(keys, values, strict=True):
        if key is not None and value is not None:
            sums[key] = sums.get(key, ZERO) + value
    return sums


def person_facts(
    memberships: pd.DataFrame,
    payments: pd.DataFrame,
    plans: pd.DataFrame,
    as_of: dt.datetime | pd.Timestamp | str,
    *,
    members: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Facts of each person with a payment created by ``as_of`` (any outcome), by person key.
    ``members``: ``membership_facts`` of the same data at the same ``as_of``, when already
    computed (it is the expensive part)."""
    as_of = _utc(as_of)
    payments = payments[payments["created_at"] <= as_of]
    people = sorted({k for k in payments["person_key"] if k is not None})
    if members is None:
        members = membership_facts(memberships, payments, plans, as_of)

    paid = _paid_by(payments, as_of)
    refund_known = paid["refunded_at"].notna() & (paid["refunded_at"] <= as_of)
    refunds = paid["usd_refunded"].where(refund_known, None)
    value = _decimal_sums(paid["person_key"], paid["usd_amount"])
    for key, refund in _decimal_sums(paid["person_key"], refunds).items():
        value[key] -= refund
    charged = _charged(paid).groupby("person_key")
    by_person = members.groupby("person_key")
    mrr = _decimal_sums(members["person_key"], members["monthly_revenue_usd"])
    facts = pd.DataFrame(
        {
            "lifetime_value_usd": [value.get(k, ZERO) for k in people],
            "monthly_revenue_usd": [mrr.get(k, ZERO) for k in people],
        },
        index=pd.Index(people, name="person_key", dtype=object),
        dtype=object,
    )
    facts["customer_since"] = charged["paid_at"].min().reindex(facts.index)
    facts["last_payment_at"] = charged["paid_at"].max().reindex(facts.index)
    # reindex: a column assigned to an empty frame would otherwise bring its own rows
    facts["failed_payments_90d"] = _failed_counts(payments, as_of, 90, "person_key").reindex(
        facts.index
    )
    facts["active_memberships"] = by_person["active_at"].sum().reindex(facts.index)
    facts["cancel_at_period_end_memberships"] = (
        by_person["cancel_at_period_end_known"].sum().reindex(facts.index)
    )
    for column in ("failed_payments_90d", "active_memberships", "cancel_at_period_end_memberships"):
        facts[column] = facts[column].fillna(0).astype("int64")
    return facts[PERSON_FACT_COLUMNS]


@dataclass(frozen=True)
class Frames:
    memberships: pd.DataFrame
    payments: pd.DataFrame
    plans: pd.DataFrame


def _chunks(
    conn: sa.Connection, object_name: str, connection: str, created_to: dt.datetime | None
) -> Iterator[list[Row]]:
    """One connection's payloads, ``READ_CHUNK`` per query (keyset on id, so in id order)."""
    table = RAW_TABLES[object_name]
    last: str | None = None
    while True:
        query = sa.select(table.c.id, table.c.payload).where(table.c.connection == connection)
        if created_to is not None:
            query = query.where(table.c.created_at <= created_to)
        if last is not None:
            query = query.where(table.c.id > last)
        rows = conn.execute(query.order_by(table.c.id).limit(READ_CHUNK)).all()
        yield [row.payload for row in rows]
        if len(rows) < READ_CHUNK:
            return
        last = rows[-1].id


def _framed(chunks: Iterator[list[Row]], to_frame) -> pd.DataFrame:
    """Each chunk of JSON reduced to its frame before the next is read: memory holds one chunk of
    payloads and the small frames, never the history as dicts. Chunks come in id order, so the
    frames concatenate in the order ``_frame`` sorts to."""
    frames = [to_frame(chunk) for chunk in chunks]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def load_frames(
    conn: sa.Connection, connection: str, *, as_of: dt.datetime | None = None
) -> Frames:
    """One connection's memberships, payments and plans from the mirror; with ``as_of``, only the
    memberships and payments created by then (all the facts at ``as_of`` read)."""
    return Frames(
        memberships=_framed(_chunks(conn, "memberships", connection, as_of), memberships_frame),
        payments=_framed(_chunks(conn, "payments", connection, as_of), payments_frame),
        plans=_framed(_chunks(conn, "plans", connection, None), plans_frame),
    )
