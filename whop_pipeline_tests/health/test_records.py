"""Health records: what each Twenty field holds, when a score is withheld or qualified, and that the
digest moves only when a shown value moves."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from whop_pipeline.health.records import (
    ScoreState,
    money,
    opportunity_health_records,
    person_health_records,
)

PUBLISHED = ScoreState(published=True)
RULE = ScoreState(published=True, suffix=" (rule: 3 ended memberships in the history, 30 needed)")
WITHHELD = ScoreState(published=False, note="not scored: no churn signal yet (holdout AUC 0.503)")


def person_facts(**overrides) -> pd.DataFrame:
    row = {
        "lifetime_value_usd": Decimal("147.00"),
        "monthly_revenue_usd": Decimal("49.00"),
        "customer_since": pd.Timestamp("2026-01-02T03:04:05Z"),
        "last_payment_at": pd.Timestamp("2026-05-02T00:00:00Z"),
        "failed_payments_90d": 1,
    }
    row.update(overrides)
    return pd.DataFrame([row], index=pd.Index(["user_a"], name="person_key"))


def risk(value: int = 42, reasons: str = "1 failed payment in 30 days") -> pd.DataFrame:
    return pd.DataFrame(
        {"churn_risk": [value], "reasons": [reasons], "membership_id": ["mem_1"]},
        index=pd.Index(["user_a"], name="person_key"),
    )


NO_LEADS = pd.DataFrame(
    {"lead_score": pd.Series(dtype="int64"), "reasons": pd.Series(dtype=object)},
    index=pd.Index([], name="person_key"),
)


@pytest.mark.parametrize(
    ("amount", "micros"),
    [
        (Decimal("147.00"), 147_000_000),
        (Decimal("0.01"), 10_000),
        (Decimal("-12.34"), -12_340_000),  # refunds beyond the charges of the period
        (Decimal(0), 0),
        (None, None),
    ],
)
def test_money_is_exact_micros_in_usd(amount, micros):
    assert money(amount) == {"amountMicros": micros, "currencyCode": "USD"}


def test_a_person_record_holds_every_field():
    [record] = person_health_records(person_facts(), risk(), NO_LEADS, PUBLISHED, PUBLISHED)
    assert record.key == "user_a" and record.links == {"person": "user_a"}
    assert record.record == {
        "whopLifetimeValue": {"amountMicros": 147_000_000, "currencyCode": "USD"},
        "whopMonthlyRevenue": {"amountMicros": 49_000_000, "currencyCode": "USD"},
        "whopCustomerSince": "2026-01-02T03:04:05.000Z",
        "whopLastPaymentAt": "2026-05-02T00:00:00.000Z",
        "whopFailedPayments90d": 1,
        "whopChurnRisk": 42,
        "whopChurnRiskReasons": "1 failed payment in 30 days",
        "whopLeadScore": None,
        "whopLeadScoreReasons": None,
    }


@pytest.mark.parametrize(
    ("state", "shown_risk", "shown_reasons"),
    [
        (PUBLISHED, 42, "1 failed payment in 30 days"),
        (
            RULE,
            42,
            "1 failed payment in 30 days (rule: 3 ended memberships in the history, 30 needed)",
        ),
        (WITHHELD, None, "not scored: no churn signal yet (holdout AUC 0.503)"),
    ],
)
def test_a_score_is_published_qualified_or_withheld(state, shown_risk, shown_reasons):
    [person] = person_health_records(person_facts(), risk(), NO_LEADS, state, PUBLISHED)
    [opportunity] = opportunity_health_records(
        risk().set_index("membership_id"), set(), state, {"mem_1": "user_a"}
    )
    for record in (person.record, opportunity.record):
        assert record["whopChurnRisk"] == shown_risk
        assert record["whopChurnRiskReasons"] == shown_reasons
    assert opportunity.person_key == "user_a"


def test_a_lead_gets_its_score_and_no_churn_risk():
    leads = pd.DataFrame(
        {"lead_score": [17], "reasons": ["paid before; lapsed 12 days ago"]},
        index=pd.Index(["user_b"], name="person_key"),
    )
    empty_risk = risk().iloc[0:0]
    [record] = person_health_records(
        person_facts().iloc[0:0], empty_risk, leads, PUBLISHED, PUBLISHED
    )
    assert record.key == "user_b"
    assert record.record["whopLeadScore"] == 17
    assert record.record["whopChurnRisk"] is None
    assert record.record["whopLifetimeValue"] == {"amountMicros": None, "currencyCode": "USD"}


def test_a_membership_no_longer_active_is_cleared():
    [cleared] = opportunity_health_records(risk().iloc[0:0], {"mem_9"}, PUBLISHED, {})
    assert cleared.key == "mem_9"
    assert cleared.record == {"whopChurnRisk": None, "whopChurnRiskReasons": None}


def test_the_digest_moves_only_with_a_shown_value():
    def digest(**changes) -> str:
        [record] = person_health_records(
            person_facts(**changes.get("facts", {})),
            risk(**changes.get("risk", {})),
            NO_LEADS,
            PUBLISHED,
            PUBLISHED,
        )
        return record.digest

    base = digest()
    assert digest() == base
    assert digest(facts={"lifetime_value_usd": Decimal("147.000")}) == base  # same cents
    assert digest(facts={"lifetime_value_usd": Decimal("147.01")}) != base
    assert digest(risk={"value": 43}) != base
