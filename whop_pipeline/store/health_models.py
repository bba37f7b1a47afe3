"""Fitted customer-health models per connection and kind, versioned (docs/health.md#stored-models).

Each training adds a version; scoring reads the newest. The model itself is opaque here (pickled
bytes): this layer stores and returns it, the ``health`` package knows what it is. Only the newest
``KEEP_VERSIONS`` of a connection's kind are kept, so the table stays small however long it runs.
"""

from __future__ import annotations

import datetime as dt
import math
import pickle
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from whop_pipeline.store.tables import health_models

KEEP_VERSIONS = 10


@dataclass(frozen=True)
class StoredModel:
    connection: str
    kind: str
    version: int
    trained_at: dt.datetime
    chosen: str
    no_signal: bool
    metrics: dict[str, Any]
    model: Any  # None when the stored bytes no longer load (the code changed): retrain


def json_safe(value: Any) -> Any:
    """Metrics → JSON: tuples as lists, numpy scalars as Python numbers, NaN as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def save(
    conn: sa.Connection,
    connection: str,
    kind: str,
    model: Any,
    *,
    chosen: str,
    no_signal: bool,
    metrics: dict[str, Any],
    trained_at: dt.datetime,
) -> int:
    """Store a newly trained model as the next version; returns that version."""
    scope = sa.and_(health_models.c.connection == connection, health_models.c.kind == kind)
    latest = conn.execute(sa.select(sa.func.max(health_models.c.version)).where(scope)).scalar()
    version = (latest or 0) + 1
    conn.execute(
        sa.insert(health_models).values(
            connection=connection,
            kind=kind,
            version=version,
            trained_at=trained_at,
            chosen=chosen,
            no_signal=no_signal,
            metrics=json_safe(metrics),
            model=pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL),
        )
    )
    conn.execute(
        sa.delete(health_models).where(scope, health_models.c.version <= version - KEEP_VERSIONS)
    )
    return version


def latest(conn: sa.Connection, connection: str, kind: str) -> StoredModel | None:
    """The connection's newest model of ``kind``, or None when it has never been trained."""
    row = conn.execute(
        sa.select(health_models)
        .where(health_models.c.connection == connection, health_models.c.kind == kind)
        .order_by(health_models.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    try:
        model = pickle.loads(row.model)  # written by this pipeline only
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, TypeError):
        model = None
    return StoredModel(
        connection=row.connection,
        kind=row.kind,
        version=row.version,
        trained_at=row.trained_at,
        chosen=row.chosen,
        no_signal=row.no_signal,
        metrics=row.metrics,
        model=model,
    )


def versions(conn: sa.Connection, connection: str, kind: str) -> list[int]:
    query = (
        sa.select(health_models.c.version)
        .where(health_models.c.connection == connection, health_models.c.kind == kind)
        .order_by(health_models.c.version)
    )
    return list(conn.execute(query).scalars())


@dataclass(frozen=True)
class ModelSummary:
    kind: str
    version: int
    trained_at: dt.datetime
    chosen: str
    no_signal: bool
    metrics: dict[str, Any]


def summaries(conn: sa.Connection, connection: str) -> dict[str, ModelSummary]:
    """The newest version of each kind, without loading the model (for status pages)."""
    newest = (
        sa.select(health_models.c.kind, sa.func.max(health_models.c.version).label("version"))
        .where(health_models.c.connection == connection)
        .group_by(health_models.c.kind)
        .subquery()
    )
    columns = [
        health_models.c[name]
        for name in ("kind", "version", "trained_at", "chosen", "no_signal", "metrics")
    ]
    query = (
        sa.select(*columns)
        .join(
            newest,
            sa.and_(
                health_models.c.kind == newest.c.kind,
                health_models.c.version == newest.c.version,
            ),
        )
        .where(health_models.c.connection == connection)
    )
    return {row.kind: ModelSummary(*row) for row in conn.execute(query)}
