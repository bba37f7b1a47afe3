"""One connection's customer health, from its mirror to its CRM records (docs/health.md).

``train_and_store`` fits a model (churn or lead) on the connection's history and keeps it as the
next version; ``score`` reads the newest models, computes the facts and scores as of ``now`` and
writes the ``personHealth`` and ``opportunityHealth`` CRM records, of which only those whose rounded
values changed become load-pending. With ``person_keys`` (a webhook batch) it reads and scores only
those people.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.health import lead as lead_model
from whop_pipeline.health import model as churn_model
from whop_pipeline.health import training
from whop_pipeline.health.facts import (
    Frames,
    load_frames,
    membership_facts,
    memberships_frame,
    payments_frame,
    person_facts,
    plans_frame,
)
from whop_pipeline.health.records import (
    OPPORTUNITY_HEALTH,
    PERSON_HEALTH,
    ScoreState,
    opportunity_health_records,
    person_health_records,
)
from whop_pipeline.store import crm, health_models
from whop_pipeline.store.database import in_chunks
from whop_pipeline.store.raw import read_raw
from whop_pipeline.store.tables import RAW_TABLES, raw_memberships, raw_payments

CHURN, LEAD = "churn", "lead"
KINDS = (CHURN, LEAD)
WRITE_CHUNK = 5_000


@dataclass
class TrainReport:
    kind: str
    version: int
    model: Any
    rows: int
    snapshots: int


@dataclass
class ScoreReport:
    churn_version: int | None = None
    lead_version: int | None = None
    churn_state: str = ""
    lead_state: str = ""
    memberships_scored: int = 0
    people: int = 0
    people_at_risk: int = 0  # churn risk ≥ AT_RISK
    leads: int = 0
    changed: dict[str, list[str]] = field(
        default_factory=lambda: {PERSON_HEALTH: [], OPPORTUNITY_HEALTH: []}
    )
    # Every record written, changed or not: a batch loads these (one whose earlier load failed is
    # still pending, and the load sends only what differs from Twenty).
    scored: dict[str, list[str]] = field(
        default_factory=lambda: {PERSON_HEALTH: [], OPPORTUNITY_HEALTH: []}
    )

    def changed_count(self, object_name: str) -> int:
        return len(self.changed[object_name])


AT_RISK = 50


def _training_rows(kind: str, frames: Frames, now: dt.datetime) -> pd.DataFrame:
    first, _last = training.data_span(frames.memberships, frames.payments)
    snapshots = training.snapshot_times(now, first)
    if kind == CHURN:
        return training.training_rows(frames.memberships, frames.payments, frames.plans, snapshots)
    return lead_model.lead_training_rows(
        frames.memberships, frames.payments, frames.plans, snapshots
    )


def train_and_store(
    engine: sa.Engine,
    connection: str,
    kind: str,
    now: dt.datetime,
    *,
    progress: Callable[[str], None] = lambda _message: None,
) -> TrainReport:
    """Fit the ``kind`` model on the connection's history up to ``now`` and store it."""
    with engine.connect() as conn:
        frames = load_frames(conn, connection, as_of=now)
    progress(f"{kind}: {len(frames.memberships)} memberships, {len(frames.payments)} payments read")
    if frames.memberships.empty:
        rows = pd.DataFrame()
        fitted = (
            churn_model.rule_model(rows, "no memberships yet")
            if kind == CHURN
            else lead_model.train_lead(rows, now=now)
        )
    else:
        rows = _training_rows(kind, frames, now)
        progress(f"{kind}: {len(rows)} training rows")
        fitted = (
            churn_model.train(rows, now=now)
            if kind == CHURN
            else lead_model.train_lead(rows, now=now)
        )
    with engine.begin() as conn:
        version = health_models.save(
            conn,
            connection,
            kind,
            fitted,
            chosen=fitted.chosen,
            no_signal=fitted.no_signal,
            metrics={**fitted.metrics, "reason": fitted.reason},
            trained_at=now,
        )
    snapshots = int(rows["snapshot"].nunique()) if len(rows) else 0
    return TrainReport(kind, version, fitted, len(rows), snapshots)


class NoModel(RuntimeError):
    """No usable stored model, and training one here was not allowed."""


def usable_model(
    engine: sa.Engine,
    connection: str,
    kind: str,
    now: dt.datetime,
    log: Callable[[str], None],
    *,
    train_missing: bool = True,
) -> health_models.StoredModel:
    """The newest stored model; trained now when there is none or it no longer loads (unless
    ``train_missing`` is false: then ``NoModel``)."""
    with engine.connect() as conn:
        stored = health_models.latest(conn, connection, kind)
    model = stored.model if stored is not None else None
    if getattr(model, "format", None) == churn_model.MODEL_FORMAT:
        return stored
    why = "none stored" if stored is None else f"version {stored.version} no longer loads"
    if not train_missing:
        raise NoModel(f"{kind} model of connection {connection!r}: {why}")
    log(f"{kind} model: {why}; training one now")
    train_and_store(engine, connection, kind, now, progress=log)
    with engine.connect() as conn:
        fresh = health_models.latest(conn, connection, kind)
    assert fresh is not None and fresh.model is not None
    return fresh


def score_state(stored: health_models.StoredModel, what: str) -> ScoreState:
    """Publish, qualify or withhold a model's scores (docs/health.md#when-scores-are-withheld)."""
    model = stored.model
    if model.no_signal:
        auc = stored.metrics.get("roc_auc")
        shown = f"holdout AUC {auc:.3f}" if auc is not None else "no holdout"
        return ScoreState(
            published=False,
            note=f"not scored: this account's history shows no {what} signal yet ({shown})",
        )
    if model.chosen == "rule":
        return ScoreState(published=True, suffix=f" (rule: {model.reason})")
    return ScoreState(published=True)


def _state_word(stored: health_models.StoredModel) -> str:
    if stored.model.no_signal:
        return "no_signal"
    return stored.model.chosen


def _ids_of_people(
    conn: sa.Connection, connection: str, table: sa.Table, keys: Collection[str]
) -> list[str]:
    ids: set[str] = set()
    for column in (table.c.user_id, table.c.member_id):
        query = sa.select(table.c.id).where(table.c.connection == connection)
        for chunk in in_chunks(sorted(keys)):
            ids.update(conn.execute(query.where(column.in_(chunk))).scalars())
    return sorted(ids)


def people_of(conn: sa.Connection, connection: str, ids: dict[str, set[str]]) -> set[str]:
    """Person keys of mirror members, memberships and payments (``ids`` by mirror table)."""
    keys: set[str] = set()
    for object_name, table in RAW_TABLES.items():
        wanted = ids.get(object_name)
        if not wanted or object_name not in ("members", "memberships", "payments"):
            continue
        member = table.c.id if object_name == "members" else table.c.member_id
        query = sa.select(table.c.user_id, member).where(table.c.connection == connection)
        for chunk in in_chunks(sorted(wanted)):
            for user_id, member_id in conn.execute(query.where(table.c.id.in_(chunk))):
                if user_id or member_id:
                    keys.add(user_id or member_id)
    return keys


def frames_of_people(conn: sa.Connection, connection: str, keys: Collection[str]) -> Frames:
    """The memberships and payments of the people ``keys`` (and every plan): what their facts
    read, and nothing else."""

    def rows(object_name: str, table: sa.Table) -> list[dict]:
        ids = _ids_of_people(conn, connection, table, keys)
        return read_raw(conn, object_name, connection, ids=ids) if ids else []

    memberships = memberships_frame(rows("memberships", raw_memberships))
    payments = payments_frame(rows("payments", raw_payments))
    wanted = set(keys)
    return Frames(
        memberships=memberships[memberships["person_key"].isin(wanted)],
        payments=payments[payments["person_key"].isin(wanted)],
        plans=plans_frame(read_raw(conn, "plans", connection)),
    )


def _renewing_active(facts: pd.DataFrame, memberships: pd.DataFrame, plans: pd.DataFrame):
    """The memberships a churn risk applies to: active, on a renewing plan."""
    one_time = set(plans.loc[plans["plan_type"] == "one_time", "id"])
    plan_of = memberships.set_index("id")["plan_id"]
    renewing = ~plan_of.reindex(facts.index).isin(one_time)
    return facts[facts["active_at"].astype(bool) & renewing.to_numpy()]


def _write(engine: sa.Engine, connection: str, object_name: str, records, report: ScoreReport):
    report.scored[object_name] += [r.key for r in records]
    for start in range(0, len(records), WRITE_CHUNK):
        with engine.begin() as conn:
            report.changed[object_name] += crm.write_records(
                conn, connection, object_name, records[start : start + WRITE_CHUNK]
            )


def score(
    engine: sa.Engine,
    connection: str,
    now: dt.datetime,
    *,
    person_keys: Collection[str] | None = None,
    train_missing: bool = True,
    log: Callable[[str], None] = lambda _message: None,
) -> ScoreReport:
    """Score the connection's customers (or only ``person_keys``) as of ``now`` into CRM records."""
    churn = usable_model(engine, connection, CHURN, now, log, train_missing=train_missing)
    lead = usable_model(engine, connection, LEAD, now, log, train_missing=train_missing)
    report = ScoreReport(
        churn_version=churn.version,
        lead_version=lead.version,
        churn_state=_state_word(churn),
        lead_state=_state_word(lead),
    )
    with engine.connect() as conn:
        if person_keys is None:
            frames = load_frames(conn, connection, as_of=now)
        else:
            frames = frames_of_people(conn, connection, person_keys)
    m, p, plans = frames.memberships, frames.payments, frames.plans
    members = membership_facts(m, p, plans, now)
    people = person_facts(m, p, plans, now, members=members)
    renewing = _renewing_active(members, m, plans)
    membership_scores = churn.model.score(renewing)
    person_risk = churn_model.person_churn_risk(membership_scores, members)
    candidates = lead_model.lead_features(m, p, plans, now)
    lead_scores = lead.model.score(candidates)

    churn_state, lead_state = score_state(churn, "churn"), score_state(lead, "conversion")
    person_records = person_health_records(
        people, person_risk, lead_scores, churn_state, lead_state
    )
    with engine.connect() as conn:
        if person_keys is None:
            stored = crm.record_keys(conn, connection, OPPORTUNITY_HEALTH)
        else:
            stored = crm.keys_where(conn, connection, OPPORTUNITY_HEALTH, "person_key", person_keys)
    cleared = (stored & set(members.index)) - set(membership_scores.index)
    opportunity_records = opportunity_health_records(
        membership_scores, cleared, churn_state, members["person_key"].to_dict()
    )
    _write(engine, connection, PERSON_HEALTH, person_records, report)
    _write(engine, connection, OPPORTUNITY_HEALTH, opportunity_records, report)

    report.memberships_scored = len(membership_scores)
    report.people = len(person_records)
    report.leads = len(lead_scores)
    if churn_state.published:
        report.people_at_risk = int((person_risk["churn_risk"] >= AT_RISK).sum())
    log(
        f"scored {report.memberships_scored} memberships and {report.people} people "
        f"({report.changed_count(PERSON_HEALTH)} people and "
        f"{report.changed_count(OPPORTUNITY_HEALTH)} opportunities changed)"
    )
    return report
