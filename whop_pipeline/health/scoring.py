"""One connection's customer health, from its mirror to its CRM records (docs/health.md).

``train_and_store`` fits a model (churn or lead) on the connection's history and keeps it as the
next version; ``score`` reads the newest models, computes the facts and scores as of ``now`` and
writes the ``personHealth`` and ``opportunityHealth`` CRM records, of which only those whose rounded
values changed become load-pending. With ``person_keys`` (a webhook batch) it reads and scores only
those people. Both read the mirror a group of people at a time (``reading``).
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
from whop_pipeline.health.facts import Frames, membership_facts, person_facts
from whop_pipeline.health.reading import first_created, frames_by_people
from whop_pipeline.health.records import (
    OPPORTUNITY_HEALTH,
    PERSON_HEALTH,
    ScoreState,
    opportunity_health_records,
    person_health_records,
)
from whop_pipeline.store import crm, health_models

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


def _training_rows(
    engine: sa.Engine, connection: str, kind: str, now: dt.datetime, progress: Callable[[str], None]
) -> pd.DataFrame:
    """The point-in-time training rows of the whole history, built a group of people at a time
    (each person's rows read only that person's data): memory holds the rows, the training
    sample, and one group's history."""
    with engine.connect() as conn:
        first = first_created(conn, connection)
    if first is None:
        return pd.DataFrame()
    snapshots = training.snapshot_times(now, first)
    build = training.training_rows if kind == CHURN else lead_model.lead_training_rows
    key = "membership_id" if kind == CHURN else "person_key"
    parts, people = [], 0
    for frames in frames_by_people(engine, connection, now):
        parts.append(build(frames.memberships, frames.payments, frames.plans, snapshots))
        people += frames.memberships["person_key"].nunique()
        progress(f"{kind}: training rows for {people} people")
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame()
    # The order one pass over the whole history gives: by snapshot, then by key.
    rows = pd.concat(parts, ignore_index=True)
    return rows.sort_values(["snapshot", key], kind="stable").reset_index(drop=True)


def train_and_store(
    engine: sa.Engine,
    connection: str,
    kind: str,
    now: dt.datetime,
    *,
    progress: Callable[[str], None] = lambda _message: None,
) -> TrainReport:
    """Fit the ``kind`` model on the connection's history up to ``now`` and store it."""
    rows = _training_rows(engine, connection, kind, now, progress)
    progress(f"{kind}: {len(rows)} training rows")
    if rows.empty:
        fitted = (
            churn_model.rule_model(rows, "no history yet")
            if kind == CHURN
            else lead_model.train_lead(rows, now=now)
        )
    else:
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


def _score_group(
    engine: sa.Engine,
    connection: str,
    frames: Frames,
    now: dt.datetime,
    models: tuple[health_models.StoredModel, health_models.StoredModel],
    report: ScoreReport,
) -> None:
    """One group of people: their facts and scores as of ``now``, written as CRM records."""
    churn, lead = models
    m, p, plans = frames.memberships, frames.payments, frames.plans
    members = membership_facts(m, p, plans, now)
    people = person_facts(m, p, plans, now, members=members)
    membership_scores = churn.model.score(_renewing_active(members, m, plans))
    person_risk = churn_model.person_churn_risk(membership_scores, members)
    lead_scores = lead.model.score(lead_model.lead_features(m, p, plans, now))

    churn_state, lead_state = score_state(churn, "churn"), score_state(lead, "conversion")
    person_records = person_health_records(
        people, person_risk, lead_scores, churn_state, lead_state
    )
    group = set(m["person_key"]) | set(p["person_key"])
    with engine.connect() as conn:
        stored = crm.keys_where(conn, connection, OPPORTUNITY_HEALTH, "person_key", group)
    cleared = (stored & set(members.index)) - set(membership_scores.index)
    opportunity_records = opportunity_health_records(
        membership_scores, cleared, churn_state, members["person_key"].to_dict()
    )
    _write(engine, connection, PERSON_HEALTH, person_records, report)
    _write(engine, connection, OPPORTUNITY_HEALTH, opportunity_records, report)
    report.memberships_scored += len(membership_scores)
    report.people += len(person_records)
    report.leads += len(lead_scores)
    if churn_state.published:
        report.people_at_risk += int((person_risk["churn_risk"] >= AT_RISK).sum())


def score(
    engine: sa.Engine,
    connection: str,
    now: dt.datetime,
    *,
    person_keys: Collection[str] | None = None,
    train_missing: bool = True,
    log: Callable[[str], None] = lambda _message: None,
) -> ScoreReport:
    """Score the connection's customers (or only ``person_keys``) as of ``now`` into CRM records,
    a group of people at a time."""
    churn = usable_model(engine, connection, CHURN, now, log, train_missing=train_missing)
    lead = usable_model(engine, connection, LEAD, now, log, train_missing=train_missing)
    report = ScoreReport(
        churn_version=churn.version,
        lead_version=lead.version,
        churn_state=_state_word(churn),
        lead_state=_state_word(lead),
    )
    for frames in frames_by_people(engine, connection, now, keys=person_keys):
        _score_group(engine, connection, frames, now, (churn, lead), report)
        if person_keys is None:
            log(f"scored {report.people} people")
    log(
        f"scored {report.memberships_scored} memberships and {report.people} people "
        f"({report.changed_count(PERSON_HEALTH)} people and "
        f"{report.changed_count(OPPORTUNITY_HEALTH)} opportunities changed)"
    )
    return report
