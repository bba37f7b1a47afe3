"""CRM records → the JSON records sent to Twenty, with relation ids resolved and field names adapted
to the workspace's capabilities. A row that cannot be sent yet (its note or target is not in
Twenty) is *deferred* with the reason, never sent half-linked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from whop_pipeline.crm.frames import TARGET_OPPORTUNITY, TARGET_PERSON
from whop_pipeline.store.crm import LoadCandidate
from whop_pipeline.store.raw import content_hash
from whop_pipeline.twenty.models import Capabilities

Row = dict[str, Any]


@dataclass(frozen=True)
class PreparedRow:
    key: str
    record: dict[str, Any]  # what is sent
    digest: str  # stored in sync_state once sent: the CRM record's digest (or its partial form)
    source: Row  # the CRM record, stored with an error for whoever reads sync_errors
    synced_before: bool = False  # written before: an update, not a create
    complete: bool = True  # every relation resolved: the CRM record is loaded for good


@dataclass(frozen=True)
class DeferredRow:
    key: str
    reason: str
    source: Row


def partial_digest(digest: str) -> str:
    """The ``sync_state`` hash of a record sent without a relation that could not be resolved yet:
    never equal to the record's digest, so the record is sent again once the relation lands."""
    return content_hash({"partial": digest})


def _source(candidate: LoadCandidate) -> Row:
    return {"record": candidate.record, "links": candidate.links}


def prepared(candidate: LoadCandidate, record: dict[str, Any], *, complete: bool = True):
    return PreparedRow(
        key=candidate.key,
        record=record,
        digest=candidate.digest if complete else partial_digest(candidate.digest),
        source=_source(candidate),
        synced_before=candidate.synced_hash is not None,
        complete=complete,
    )


def prepare_plain(candidates: Iterable[LoadCandidate]) -> list[PreparedRow]:
    """Objects with no relations to resolve: people, products."""
    return [prepared(c, c.record) for c in candidates]


def prepare_opportunities(
    candidates: Iterable[LoadCandidate], person_ids: Mapping[str, str]
) -> tuple[list[PreparedRow], int, int]:
    """Point of contact resolved from ``sync_state``. An opportunity whose person is not in Twenty
    yet is still sent, without one, and sent again once the person lands; while the person is
    still missing it is not re-sent. Returns the rows, how many lack their point of contact, and
    how many were skipped as already sent that way."""
    result, unlinked, skipped = [], 0, 0
    for candidate in candidates:
        person_key = (candidate.links or {}).get("person")
        person_id = person_ids.get(person_key) if person_key else None
        complete = person_key is None or person_id is not None
        if not complete:
            unlinked += 1
            if candidate.synced_hash == partial_digest(candidate.digest):
                skipped += 1
                continue
        record = {**candidate.record, "pointOfContactId": person_id}
        result.append(prepared(candidate, record, complete=complete))
    return result, unlinked, skipped


def prepare_notes(candidates: Iterable[LoadCandidate], caps: Capabilities) -> list[PreparedRow]:
    body_field = caps.note_body_field
    result = []
    for candidate in candidates:
        record = dict(candidate.record)
        if body_field == "body":  # legacy workspaces: plain text body
            record["body"] = record.pop("bodyV2", {}).get("markdown")
        result.append(prepared(candidate, record))
    return result


def prepare_note_targets(
    candidates: Iterable[LoadCandidate],
    caps: Capabilities,
    person_ids: Mapping[str, str],
    opportunity_ids: Mapping[str, str],
    note_ids: Mapping[str, str],
) -> tuple[list[PreparedRow], list[DeferredRow]]:
    """A target is sent only once its note and its person or opportunity are in Twenty."""
    links = caps.note_target_links
    result: list[PreparedRow] = []
    deferred: list[DeferredRow] = []
    for candidate in candidates:
        relation = candidate.links or {}
        kind, target_key, note_key = relation["kind"], relation["target"], relation["note"]
        if kind == TARGET_PERSON:
            link, target_id = links.person, person_ids.get(target_key)
        elif kind == TARGET_OPPORTUNITY:
            link, target_id = links.opportunity, opportunity_ids.get(target_key)
        else:
            raise ValueError(f"unknown note target kind {kind!r}")
        note_twenty_id = note_ids.get(note_key)
        if target_id is None or note_twenty_id is None:
            missing = f"{kind} {target_key}" if target_id is None else f"note of {note_key}"
            reason = f"waiting for {missing} to reach Twenty"
            deferred.append(DeferredRow(candidate.key, reason, _source(candidate)))
            continue
        record = {**candidate.record, "noteId": note_twenty_id, link: target_id}
        result.append(prepared(candidate, record))
    return result, deferred


def prepare_health(
    candidates: Iterable[LoadCandidate], target: str, target_ids: Mapping[str, str]
) -> tuple[list[PreparedRow], list[DeferredRow]]:
    """Health fields onto the person or opportunity already in Twenty (by its id); a record whose
    target has not landed yet waits, so a health update never creates a bare record."""
    result: list[PreparedRow] = []
    deferred: list[DeferredRow] = []
    for candidate in candidates:
        twenty_id = target_ids.get(candidate.key)
        if twenty_id is None:
            reason = f"waiting for {target} {candidate.key} to reach Twenty"
            deferred.append(DeferredRow(candidate.key, reason, _source(candidate)))
            continue
        result.append(prepared(candidate, {"id": twenty_id, **candidate.record}))
    return result, deferred
