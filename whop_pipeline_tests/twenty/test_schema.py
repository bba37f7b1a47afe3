"""The schema step: creates what is missing, once; adapts to legacy workspaces; refuses to guess."""

from __future__ import annotations

import pytest

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.twenty import create_twenty_app
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.schema import CUSTOM_FIELDS, SchemaConflict, ensure_schema

pytestmark = pytest.mark.sandbox
KEY = "schema-test-key"


@pytest.fixture
def workspace(request):
    options = getattr(request, "param", {})
    emulator = create_twenty_app(api_key=KEY, rate_limit_per_minute=100_000, **options)
    with BackgroundServer(emulator.app) as server:
        yield emulator, TwentyClient(base_url=server.url, api_key=KEY, calls_per_minute=100_000)


def test_creates_everything_once(workspace):
    _, client = workspace
    caps, report = ensure_schema(client)
    assert len(report.created) == 1 + len(CUSTOM_FIELDS) + 1  # object, fields, stages
    values = caps.stage_values()
    assert values[:5] == ["NEW", "SCREENING", "MEETING", "PROPOSAL", "CUSTOMER"]
    assert set(values) >= {"NEGOTIATION", "LOST"}
    assert set(caps.unique_fields("person")) >= {"emails.primaryEmail", "whopUserId"}
    assert caps.unique_fields("whopProduct") == ["whopProductId"]
    calls = client.stats.calls
    _, again = ensure_schema(client)
    assert again.created == [] and again.present == len(CUSTOM_FIELDS) + 1
    assert client.stats.calls - calls == 1  # one read, no writes


def test_existing_stage_options_are_kept(workspace):
    _, client = workspace
    stage = client.objects()["opportunity"].fields["stage"]
    custom = [
        *stage.options,
        {"value": "ON_HOLD", "label": "On hold", "color": "gray", "position": 5},
    ]
    client.update_field(stage.id, {"options": custom})
    caps, _ = ensure_schema(client)
    assert caps.stage_values()[:6] == [
        "NEW",
        "SCREENING",
        "MEETING",
        "PROPOSAL",
        "CUSTOMER",
        "ON_HOLD",
    ]
    kept = caps.object("opportunity").fields["stage"].options
    assert {o["id"] for o in stage.options} <= {o["id"] for o in kept}


@pytest.mark.parametrize("workspace", [{"note_target_style": "legacy"}], indirect=True)
def test_legacy_note_targets_are_detected(workspace):
    _, client = workspace
    caps, _ = ensure_schema(client)
    assert caps.note_target_links.person == "personId"
    assert caps.note_target_links.opportunity == "opportunityId"


def test_current_note_targets_are_detected(workspace):
    _, client = workspace
    caps, _ = ensure_schema(client)
    assert caps.note_target_links.person == "targetPersonId"
    assert caps.note_body_field == "bodyV2"


def test_a_non_unique_field_of_ours_is_a_conflict_not_a_guess(workspace):
    _, client = workspace
    person = client.objects()["person"]
    client.create_field(
        {
            "objectMetadataId": person.id,
            "type": "TEXT",
            "name": "whopUserId",
            "label": "Whop",
            "isUnique": False,
        }
    )
    with pytest.raises(SchemaConflict, match=r"person\.whopUserId exists but is not unique"):
        ensure_schema(client)
