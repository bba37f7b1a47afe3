"""Customer health → CRM records (README.md#customer-health). Pure: no I/O.

Two CRM objects carry the health fields onto records the sync already owns: ``personHealth`` (one per
person, sent to Twenty's ``people``) and ``opportunityHealth`` (one per membership, sent to
``opportunities``). Each record holds every health field, a null where it does not apply, so a score
that no longer applies is cleared. Values are rounded as Twenty shows them (cents, whole points)
before the digest, so a re-score that moves nothing visible is not sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from whop_pipeline.store.crm import CrmRecord, record_digest

PERSON_HEALTH = "personHealth"
OPPORTUNITY_HEALTH = "opportunityHealth"
# Health object → (the Twenty object its records update, the CRM object holding that record).
TARGETS = {
    PERSON_HEALTH: ("people", "people"),
    OPPORTUNITY_HEALTH: ("opportunities", "opportunities"),
}
HEALTH_OBJECTS = (PERSON_HEALTH, OPPORTUNITY_HEALTH)


@dataclass(frozen=True)
class ScoreState:
    """How a model's scores may be shown: ``published`` false means the scores are withheld (no
    model, or no signal) and ``note`` says why on the record; ``suffix`` qualifies published
    reasons (the thin-history rule says it is a rule)."""

    published: bool
    note: str | None = None
    suffix: str = ""

    def reasons(self, reasons: str | None) -> str | None:
        if not self.published:
            return self.note
        return f"{reasons}{self.suffix}" if reasons else None


def money(amount: Decimal | None) -> dict[str, Any]:
    """USD as a Twenty CURRENCY value: exact micros from the cent-rounded decimal."""
    if amount is None:
        return {"amountMicros": None, "currencyCode": "USD"}
    return {"amountMicros": int(amount * 1_000_000), "currencyCode": "USD"}


def _time(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _number(value: Any) -> int | None:
    if value is None or pd.isna(value):
        return None
    return int(value)


def _record(key: str, record: dict[str, Any], link: str, **columns: Any) -> CrmRecord:
    links = {link: key}
    digest = record_digest(record, links)
    return CrmRecord(key=key, record=record, digest=digest, links=links, **columns)


def person_health_records(
    facts: pd.DataFrame,
    risk: pd.DataFrame,
    leads: pd.DataFrame,
    churn: ScoreState,
    lead: ScoreState,
) -> list[CrmRecord]:
    """One ``personHealth`` record per person in ``facts`` (``person_facts``), ``risk``
    (``person_churn_risk``) or ``leads`` (lead scores), by person key."""
    keys = sorted(set(facts.index) | set(risk.index) | set(leads.index))
    fact_rows = facts.to_dict("index")
    risk_rows = risk.to_dict("index")
    lead_rows = leads.to_dict("index")
    records = []
    for key in keys:
        fact = fact_rows.get(key, {})
        at_risk = risk_rows.get(key)
        as_lead = lead_rows.get(key)
        record = {
            "whopLifetimeValue": money(fact.get("lifetime_value_usd")),
            "whopMonthlyRevenue": money(fact.get("monthly_revenue_usd")),
            "whopCustomerSince": _time(fact.get("customer_since")),
            "whopLastPaymentAt": _time(fact.get("last_payment_at")),
            "whopFailedPayments90d": _number(fact.get("failed_payments_90d", 0)),
            "whopChurnRisk": None,
            "whopChurnRiskReasons": None,
            "whopLeadScore": None,
            "whopLeadScoreReasons": None,
        }
        if at_risk is not None:
            record["whopChurnRisk"] = _number(at_risk["churn_risk"]) if churn.published else None
            record["whopChurnRiskReasons"] = churn.reasons(at_risk["reasons"])
        if as_lead is not None:
            record["whopLeadScore"] = _number(as_lead["lead_score"]) if lead.published else None
            record["whopLeadScoreReasons"] = lead.reasons(as_lead["reasons"])
        records.append(_record(key, record, "person", person_key=key))
    return records


def opportunity_health_records(
    scores: pd.DataFrame, cleared: set[str], churn: ScoreState, person_of: dict[str, str | None]
) -> list[CrmRecord]:
    """One ``opportunityHealth`` record per scored membership (``scores`` by membership id), and a
    cleared one for each membership in ``cleared`` (scored before, not active now). ``person_of``:
    each membership's person key (a webhook batch finds a person's records by it)."""
    rows = scores.to_dict("index")
    records = []
    for key in sorted(set(rows) | cleared):
        row = rows.get(key)
        if row is None:
            record = {"whopChurnRisk": None, "whopChurnRiskReasons": None}
        else:
            record = {
                "whopChurnRisk": _number(row["churn_risk"]) if churn.published else None,
                "whopChurnRiskReasons": churn.reasons(row["reasons"]),
            }
        records.append(_record(key, record, "opportunity", person_key=person_of.get(key)))
    return records
