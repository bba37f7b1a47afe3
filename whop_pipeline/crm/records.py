"""CRM frames → CRM records (the rows of ``crm_records``): each frame row becomes the Twenty record
it will be sent as, its relations by source key, and the digest the loader compares. Pure: no I/O.

A frame's columns not starting with ``_`` are Twenty field paths (``name.firstName``); ``_key`` is
the source key; ``_day`` the UTC day of the source object; ``_person_key``, ``_note_key``,
``_target_kind`` and ``_target_key`` are relations, resolved to Twenty ids only at load time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from whop_pipeline.crm.frames import TARGET_PERSON
from whop_pipeline.store.crm import CrmRecord, record_digest

Row = dict[str, Any]


def _plain(value: Any) -> Any:
    """Frame cell → JSON value: numpy scalars to Python, NaN to None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    return value


def frame_rows(frame: pd.DataFrame) -> list[Row]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def unflatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name.firstName": "Ana"}`` → ``{"name": {"firstName": "Ana"}}``; ``_`` columns dropped."""
    record: dict[str, Any] = {}
    for path, value in row.items():
        if path.startswith("_"):
            continue
        *parents, leaf = path.split(".")
        target = record
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return record


def _record(row: Row, links: dict[str, Any] | None = None, **columns: Any) -> CrmRecord:
    record = unflatten(row)
    return CrmRecord(
        key=row["_key"],
        record=record,
        digest=record_digest(record, links),
        day=row.get("_day"),
        links=links,
        **columns,
    )


def people_records(frame: pd.DataFrame) -> list[CrmRecord]:
    """``email`` is the person's own (candidate) email, primary or shared: the key to the people
    whose rows an email change reaches."""
    records = []
    for row in frame_rows(frame):
        additional = row.get("emails.additionalEmails") or []
        email = row.get("emails.primaryEmail") or (additional[0] if additional else None)
        records.append(_record(row, person_key=row["_key"], email=email))
    return records


def product_records(frame: pd.DataFrame) -> list[CrmRecord]:
    return [_record(row) for row in frame_rows(frame)]


def opportunity_records(frame: pd.DataFrame) -> list[CrmRecord]:
    return [
        _record(row, {"person": row["_person_key"]}, person_key=row["_person_key"])
        for row in frame_rows(frame)
    ]


def note_records(frame: pd.DataFrame) -> list[CrmRecord]:
    return [_record(row) for row in frame_rows(frame)]


def note_target_records(frame: pd.DataFrame) -> list[CrmRecord]:
    records = []
    for row in frame_rows(frame):
        kind, target = row["_target_kind"], row["_target_key"]
        links = {"note": row["_note_key"], "kind": kind, "target": target}
        person = target if kind == TARGET_PERSON else None
        records.append(
            _record(
                {"_key": row["_key"], "_day": row["_day"], "id": row["id"]},
                links,
                person_key=person,
            )
        )
    return records
