"""CRM frames → the JSON records sent to Twenty, with relation ids resolved and field names adapted
to the workspace's capabilities. A row that cannot be sent yet (its person or opportunity is not in
Twenty) is *deferred* with the reason, never sent half-linked."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from whop_pipeline.crm.frames import TARGET_OPPORTUNITY, TARGET_PERSON
from whop_pipeline.store.raw import content_hash
from whop_pipeline.twenty.models import Capabilities

Row = dict[str, Any]


@dataclass(frozen=True)
class PreparedRow:
    key: str
    record: dict[str, Any]  # what is sent
    digest: str  # content hash of ``record``: equal to sync_state's means nothing to send
    source: Row  # the frame row, stored with an error so the row can be retried later


@dataclass(frozen=True)
class DeferredRow:
    key: str
    reason: str
    source: Row


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


def prepared(key: str, record: dict[str, Any], source: Row) -> PreparedRow:
    return PreparedRow(key=key, record=record, digest=content_hash(record), source=source)


def prepare_plain(rows: Iterable[Row]) -> list[PreparedRow]:
    """Objects with no relations to resolve: people, products."""
    return [prepared(row["_key"], unflatten(row), row) for row in rows]


def prepare_opportunities(
    rows: Iterable[Row], person_ids: Mapping[str, str]
) -> tuple[list[PreparedRow], int]:
    """Point of contact resolved from ``sync_state``. An opportunity whose person is not in Twenty
    yet is still sent, without one; the link changes its hash, so it is re-sent once the person
    lands. Returns the rows and how many lack their point of contact."""
    result, unlinked = [], 0
    for row in rows:
        record = unflatten(row)
        person_key = row.get("_person_key")
        record["pointOfContactId"] = person_ids.get(person_key) if person_key else None
        if person_key and record["pointOfContactId"] is None:
            unlinked += 1
        result.append(prepared(row["_key"], record, row))
    return result, unlinked


def prepare_notes(rows: Iterable[Row], caps: Capabilities) -> list[PreparedRow]:
    body_field = caps.note_body_field
    result = []
    for row in rows:
        record = unflatten(row)
        if body_field == "body":  # legacy workspaces: plain text body
            record["body"] = record.pop("bodyV2", {}).get("markdown")
        result.append(prepared(row["_key"], record, row))
    return result


def prepare_note_targets(
    rows: Iterable[Row],
    caps: Capabilities,
    person_ids: Mapping[str, str],
    opportunity_ids: Mapping[str, str],
    note_ids: Mapping[str, str],
) -> tuple[list[PreparedRow], list[DeferredRow]]:
    """A target is sent only once its note and its person or opportunity are in Twenty."""
    links = caps.note_target_links
    result: list[PreparedRow] = []
    deferred: list[DeferredRow] = []
    for row in rows:
        kind, target_key = row["_target_kind"], row["_target_key"]
        if kind == TARGET_PERSON:
            link, target_id = links.person, person_ids.get(target_key)
        elif kind == TARGET_OPPORTUNITY:
            link, target_id = links.opportunity, opportunity_ids.get(target_key)
        else:
            raise ValueError(f"unknown note target kind {kind!r}")
        note_twenty_id = note_ids.get(row["_note_key"])
        if target_id is None or note_twenty_id is None:
            missing = f"{kind} {target_key}" if target_id is None else f"note of {row['_note_key']}"
            deferred.append(DeferredRow(row["_key"], f"waiting for {missing} to reach Twenty", row))
            continue
        record = {"id": row["id"], "noteId": note_twenty_id, link: target_id}
        result.append(prepared(row["_key"], record, row))
    return result, deferred
