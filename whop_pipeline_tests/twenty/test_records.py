"""Frame rows → Twenty records: unflattening, relation resolution, deferral, retries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

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


def test_unflatten_builds_composites_and_drops_private_columns():
    row = {
        "_key": "k",
        "name.firstName": "Ana",
        "name.lastName": "",
        "emails.primaryEmail": None,
        "x": 1,
    }
    assert records.unflatten(row) == {
        "name": {"firstName": "Ana", "lastName": ""},
        "emails": {"primaryEmail": None},
        "x": 1,
    }


def test_frame_rows_are_plain_json_values():
    frame = pd.DataFrame(
        {"_key": ["a"], "n": [np.int64(5)], "f": [math.nan], "l": [["x@y.z"]]}, dtype=object
    )
    assert records.frame_rows(frame) == [{"_key": "a", "n": 5, "f": None, "l": ["x@y.z"]}]
    assert type(records.frame_rows(frame)[0]["n"]) is int


def test_equal_content_has_equal_digest_whatever_the_order():
    a = records.prepared("k", {"a": 1, "b": {"c": 2}}, {})
    b = records.prepared("k", {"b": {"c": 2}, "a": 1}, {})
    assert a.digest == b.digest


def test_opportunities_without_a_synced_person_are_sent_unlinked():
    rows = [
        {"_key": "mem_1", "_person_key": "user_1", "id": "o1", "name": "A"},
        {"_key": "mem_2", "_person_key": "user_2", "id": "o2", "name": "B"},
        {"_key": "mem_3", "_person_key": None, "id": "o3", "name": "C"},
    ]
    prepared, unlinked = records.prepare_opportunities(rows, {"user_1": "p1"})
    assert [p.record["pointOfContactId"] for p in prepared] == ["p1", None, None]
    assert unlinked == 1


@pytest.mark.parametrize(
    ("fields", "person_link"),
    [
        (("targetPersonId", "targetOpportunityId"), "targetPersonId"),
        (("personId", "opportunityId"), "personId"),
    ],
)
def test_note_targets_use_the_workspace_link_names_and_wait_for_their_targets(fields, person_link):
    rows = [
        {
            "_key": "pay_1:person",
            "_note_key": "pay_1",
            "_target_kind": "person",
            "_target_key": "user_1",
            "id": "t1",
        },
        {
            "_key": "pay_1:opportunity",
            "_note_key": "pay_1",
            "_target_kind": "opportunity",
            "_target_key": "mem_9",
            "id": "t2",
        },
        {
            "_key": "pay_2:person",
            "_note_key": "pay_2",
            "_target_kind": "person",
            "_target_key": "user_1",
            "id": "t3",
        },
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
    rows = [{"_key": "pay_1", "id": "n1", "title": "T", "bodyV2.markdown": "**hi**"}]
    assert records.prepare_notes(rows, caps())[0].record["bodyV2"] == {"markdown": "**hi**"}
    legacy = records.prepare_notes(rows, caps(note_fields=("body",)))[0].record
    assert legacy["body"] == "**hi**" and "bodyV2" not in legacy
