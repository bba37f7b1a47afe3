"""What the GraphQL API and the settings page show and do, written once for both.

Every function takes the ``Principal`` and refuses (``Forbidden``) a connection it may not act on,
before reading anything of it: a token of connection A never reads or changes B.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from whop_pipeline.execution import connection_ops
from whop_pipeline.store import connections, crm, health_models
from whop_pipeline.web.auth import Principal
from whop_pipeline.web.launcher import RunView, SyncLauncher


class Forbidden(PermissionError):
    """The principal may not act on that connection (or it does not exist: the same answer, so
    a token cannot probe which names exist)."""


@dataclass(frozen=True)
class ConnectionView:
    name: str
    status: str
    is_connected: bool
    whop_account_id: str
    handle: str | None
    whop_auth: str
    twenty_url: str
    last_sync_at: dt.datetime | None
    last_sync_outcome: str | None
    last_sync_written: int
    last_error: str | None
    has_webhook: bool
    last_run: RunView | None


def _require(conn: sa.Connection, principal: Principal, name: str) -> connections.Connection:
    if not principal.may_act_on(name):
        raise Forbidden(f"not allowed to act on connection {name!r}")
    row = connections.get(conn, name)
    if row is None:
        raise Forbidden(f"not allowed to act on connection {name!r}")
    return row


def visible_names(engine: sa.Engine, principal: Principal) -> list[str]:
    """The connections this principal may see: all for an admin, its own otherwise."""
    with engine.connect() as conn:
        rows = connections.list_all(conn)
    return [row.name for row in rows if principal.may_act_on(row.name)]


def connection_view(
    engine: sa.Engine, launcher: SyncLauncher, principal: Principal, name: str
) -> ConnectionView:
    with engine.connect() as conn:
        row = _require(conn, principal, name)
    return ConnectionView(
        name=row.name,
        status=row.status,
        is_connected=row.status in ("active", "paused") and row.has_credentials,
        whop_account_id=row.whop_account_id,
        handle=row.whop_account_handle,
        whop_auth=row.whop_auth,
        twenty_url=row.twenty_api_url,
        last_sync_at=row.last_sync_finished_at or row.last_sync_started_at,
        last_sync_outcome=row.last_sync_outcome,
        last_sync_written=row.last_sync_written or 0,
        last_error=row.last_error,
        has_webhook=bool(row.whop_webhook_id),
        last_run=launcher.latest(name),
    )


def trigger_sync(
    engine: sa.Engine, launcher: SyncLauncher, principal: Principal, name: str, *, full: bool
) -> str:
    """Start a sync of ``name``; its run id (the run's outcome comes from ``run_view``)."""
    with engine.connect() as conn:
        row = _require(conn, principal, name)
    if row.status == "disconnected" or not row.has_credentials:
        raise ValueError(f"connection {name!r} is {row.status}: connect it before syncing")
    return launcher.launch(name, full=full)


def run_view(launcher: SyncLauncher, principal: Principal, name: str, run_id: str) -> RunView:
    if not principal.may_act_on(name):
        raise Forbidden(f"not allowed to act on connection {name!r}")
    run = launcher.run(run_id, connection=name)
    if run is None:
        raise Forbidden(f"no run {run_id!r} of connection {name!r}")
    return run


def disconnect(engine: sa.Engine, principal: Principal, name: str) -> connection_ops.Disconnected:
    with engine.connect() as conn:
        _require(conn, principal, name)
    return connection_ops.disconnect(engine, name)


@dataclass(frozen=True)
class CustomerRisk:
    person_key: str
    churn_risk: int
    reasons: str | None
    lifetime_value_usd: str | None
    monthly_revenue_usd: str | None


@dataclass(frozen=True)
class HealthView:
    models: dict[str, health_models.ModelSummary]
    people_scored: int
    at_risk: int
    customers_at_risk: list[CustomerRisk]


def _usd(money: dict | None) -> str | None:
    micros = (money or {}).get("amountMicros")
    return None if micros is None else f"{micros / 1_000_000:.2f}"


def customer_health(
    engine: sa.Engine, principal: Principal, name: str, *, min_churn_risk: int, limit: int
) -> HealthView:
    """The connection's newest models and its customers at risk (from the health records it
    wrote to Twenty), riskiest first."""
    with engine.connect() as conn:
        _require(conn, principal, name)
        models = health_models.summaries(conn, name)
        scored, risky = 0, []
        for key, record in crm.iter_records(conn, name, "personHealth"):
            scored += 1
            risk = record.get("whopChurnRisk")
            if risk is not None and risk >= min_churn_risk:
                risky.append(
                    CustomerRisk(
                        person_key=key,
                        churn_risk=risk,
                        reasons=record.get("whopChurnRiskReasons"),
                        lifetime_value_usd=_usd(record.get("whopLifetimeValue")),
                        monthly_revenue_usd=_usd(record.get("whopMonthlyRevenue")),
                    )
                )
    risky.sort(key=lambda r: (-r.churn_risk, r.person_key))
    return HealthView(models, scored, len(risky), risky[:limit])


def churn_model_text(engine: sa.Engine, principal: Principal, name: str) -> str:
    """The connection's churn model in a few words, for the settings page."""
    with engine.connect() as conn:
        _require(conn, principal, name)
        churn = health_models.summaries(conn, name).get("churn")
    if churn is None:
        return "not trained yet"
    if churn.no_signal:
        return f"v{churn.version}: no signal, scores withheld"
    if churn.chosen == "rule":
        return f"v{churn.version}: rule (history too thin to learn)"
    auc = churn.metrics.get("roc_auc")
    return f"v{churn.version}: {churn.chosen.replace('_', ' ')}, holdout AUC {auc:.2f}"
