"""The GraphQL types of ``whopCustomerHealth``: a connection's newest models and its customers at
risk, as ``views.customer_health`` reads them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry

from whop_pipeline.web import views


@strawberry.type(description="The newest trained model of one kind (churn or lead).")
class WhopHealthModel:
    kind: str
    version: int
    trained_at: dt.datetime
    chosen: str = strawberry.field(description="logistic, gradient_boosting or rule.")
    no_signal: bool = strawberry.field(
        description="The holdout showed no signal: its scores are withheld from Twenty."
    )
    roc_auc: float | None = strawberry.field(description="Holdout ROC AUC (null for the rule).")
    baseline_auc: float | None = strawberry.field(description="The best single feature's AUC.")
    reason: str | None = strawberry.field(description="Why the rule, or why no signal.")


@strawberry.type(description="A customer whose churn risk is at or above the threshold.")
class WhopCustomerRisk:
    person_key: str = strawberry.field(description="The Whop user id (member id if no user).")
    churn_risk: int
    reasons: str | None
    lifetime_value_usd: str | None
    monthly_revenue_usd: str | None


@strawberry.type(description="Customer health of a connection (README.md#customer-health).")
class WhopCustomerHealth:
    churn_model: WhopHealthModel | None
    lead_model: WhopHealthModel | None
    people_scored: int
    customers_at_risk_count: int
    customers_at_risk: list[WhopCustomerRisk] = strawberry.field(
        description="Riskiest first, at most `limit`."
    )


def _model(summary: Any) -> WhopHealthModel | None:
    if summary is None:
        return None
    metrics = summary.metrics
    return WhopHealthModel(
        kind=summary.kind,
        version=summary.version,
        trained_at=summary.trained_at,
        chosen=summary.chosen,
        no_signal=summary.no_signal,
        roc_auc=metrics.get("roc_auc"),
        baseline_auc=metrics.get("baseline_auc"),
        reason=metrics.get("reason"),
    )


def health_answer(view: views.HealthView) -> WhopCustomerHealth:
    return WhopCustomerHealth(
        churn_model=_model(view.models.get("churn")),
        lead_model=_model(view.models.get("lead")),
        people_scored=view.people_scored,
        customers_at_risk_count=view.at_risk,
        customers_at_risk=[WhopCustomerRisk(**vars(risk)) for risk in view.customers_at_risk],
    )
