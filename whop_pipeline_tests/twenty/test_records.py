"""CRM records → Twenty records: relation resolution, deferral, partial sends, legacy fields."""

from __future__ import annotations

import pytest

from whop_pipeline.store.crm import LoadCandidate, record_digest
from whop_pipeline.twenty import records
from whop_pipeline.twenty.models import Capabilities, FieldMeta, ObjectMeta

pytestmark = pytest.mark.unit


def caps(note_target_fields=("targetPersonId", "targetOpportunityId"), note_fields=("bodyV2",)):
    def obj(name, plural, fields):
        metas = {f: FieldMeta(id=f, name=f, type="TEXT") for f in fields}
        return ObjectMeta(id=name, name_singular=name, name_plural=plural, fields=metas)

    return Capabilities(
        objects={
            "noteTarget": obj("noteTarget", "noteTargets", note_target_fields),
            "note": obj("note", "notes", ("title", *note_fields)),
        }
    )


def candidate(key, record, links=None, synced_hash=None) -> LoadCandidate:
    return LoadCandidate(key, record, links, record_digest(record, links), synced_hash)


def test_opportunities_without_a_synced_person_are_sent_unlinked_once():
    rows = [
        candidate("mem_1", {"id": "o1", "name": "A"}, {"person": "user_1"}),
        candidate("mem_2", {"id": "o2", "name": "B"}, {"person": "user_2"}),
        candidate("mem_3", {"id": "o3", "name": "C"}, {"person": None}),
    ]
    prepared, unlinked, skipped = records.prepare_opportunities(rows, {"user_1": "p1"})
    assert [p.record["pointOfContactId"] for p in prepared] == ["p1", None, None]
    assert (unlinked, skipped) == (1, 0)
    # The unlinked one is stored with its partial digest: sent again only once its person lands.
    unlinked_row = prepared[1]
    assert not unlinked_row.complete and unlinked_row.digest != rows[1].digest
    again = candidate("mem_2", {"id": "o2", "name": "B"}, {"person": "user_2"}, unlinked_row.digest)
    assert records.prepare_opportunities([again], {}) == ([], 1, 1)
    landed, unlinked, _ = records.prepare_opportunities([again], {"user_2": "p2"})
    assert landed[0].complete and landed[0].digest == again.digest and unlinked == 0


@pytest.mark.parametrize(
    ("fields", "person_link"),
    [
        (("targetPersonId", "targetOpportunityId"), "targetPersonId"),
        (("personId", "opportunityId"), "personId"),
    ],
)
def test_note_targets_use_the_workspace_link_names_and_wait_for_their_targets(fields, person_link):
    def target(key, note, kind, target, twenty_id):
        return candidate(key, {"id": twenty_id}, {"note": note, "kind": kind, "target": target})

    rows = [
        target("pay_1:person", "pay_1", "person", "user_1", "t1"),
        target("pay_1:opportunity", "pay_1", "opportunity", "mem_9", "t2"),
        target("pay_2:person", "pay_2", "person", "user_1", "t3"),
    ]
    ready, waiting = records.prepare_note_targets(
        rows,
        caps(fields),
        person_ids={"user_1": "p1"},
        opportunity_ids={},
        note_ids={"pay_1": "n1"},
    )
    assert [r.record for r in ready] == [{"id": "t1", "noteId": "n1", person_link: "p1"}]
    assert {w.key: w.reason for w in waiting} == {
        "pay_1:opportunity": "waiting for opportunity mem_9 to reach Twenty",
        "pay_2:person": "waiting for note of pay_2 to reach Twenty",
    }


def test_notes_fall_back_to_the_legacy_body_field():
    rows = [candidate("pay_1", {"id": "n1", "title": "T", "bodyV2": {"markdown": "**hi**"}})]
    assert records.prepare_notes(rows, caps())[0].record["bodyV2"] == {"markdown": "**hi**"}
    legacy = records.prepare_notes(rows, caps(note_fields=("body",)))[0].record
    assert legacy["body"] == "**hi**" and "bodyV2" not in legacy
