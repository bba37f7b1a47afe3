"""Members in the emulator: ``member.created`` / ``member.updated`` webhooks, the
``POST /_sandbox/members/{id}`` control endpoint, and finding new and changed members through
``GET /members``.

Public facts enforced here (each test's docstring names its own):
- Whop v1 webhooks include ``member.created`` and ``member.updated`` (whop-sdk
  ``CreateWebhooksRequestEventsItem``); their ``data`` is a ``Member``, the object ``GET
  /members/{id}`` returns (whop-sdk ``PostMemberCreatedPayload`` / ``PostMemberUpdatedPayload``;
  ``docs/whop-api.md#webhooks``).
- ``previous_attributes``: "for some ``.updated`` events, the old values of the payload fields that
  changed, keyed by field name" (whop-sdk ``PostMemberUpdatedPayload``).
- ``Member.display_name``: "the user's name, or their username when they have not set one. The
  buying business's name when ``user`` is ``null``" (whop-sdk ``types/member.py``).
- ``GET /members`` filters on ``created_after`` / ``created_before`` and searches ``query`` over
  name, username and email (whop-sdk ``MembersClient.list``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from whop_sdk.lib.verify_webhook import unwrap
from whop_sdk.members.types.post_member_created_payload import PostMemberCreatedPayload
from whop_sdk.members.types.post_member_updated_payload import PostMemberUpdatedPayload
from whop_sdk.types.member import Member as SdkMember

from whop_pipeline.sandbox.dataset import Member, iso
from whop_pipeline_tests.sandbox.whop_fixtures import (
    WhopEnv,
    WhopReceiver,
    start_whop,
    stop_whop,
    whop_fresh,
    whop_receiver,
    whop_shape_problems,
)

pytestmark = pytest.mark.sandbox
__all__ = ["whop_fresh", "whop_receiver"]  # fixtures, imported for pytest

SECRET = "ws_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OPTIONAL = frozenset({"previous_attributes"})


@pytest.fixture
def whop_hooked(whop_receiver: WhopReceiver) -> Iterator[WhopEnv]:
    env = start_whop(
        webhook_url=whop_receiver.url,
        webhook_secret=SECRET,
        webhook_retry_delays=(0.05, 0.1, 0.15),
    )
    yield env
    stop_whop(env)


def _delivered(env: WhopEnv, receiver: WhopReceiver) -> list[dict[str, Any]]:
    """Every delivery so far (the queue drained), each verified with the SDK's ``unwrap``."""
    assert env.emulator.wait_for_webhooks(5)
    return [unwrap(body, headers=headers, key=SECRET) for body, headers, _ in receiver.received]


def _person(env: WhopEnv) -> Member:
    """A member with a user, a name and an email."""
    return next(m for m in env.dataset.members if m.user_id and m.name and m.email)


def _sole_active(env: WhopEnv) -> tuple[str, str]:
    """(membership id, member id) of an active membership that is its member's only one."""
    held = Counter(ms.member_id for ms in env.dataset.memberships)
    ms = next(
        ms
        for ms in env.dataset.memberships
        if ms.status == "active" and not ms.cancel_at_period_end and held[ms.member_id] == 1
    )
    return ms.id, ms.member_id


def test_new_buyer_sends_member_created_before_the_membership(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    """Fact: Whop v1 sends ``member.created`` whose ``data`` is a ``Member`` (whop-sdk
    ``PostMemberCreatedPayload``), the same object ``GET /members/{id}`` returns."""
    membership = whop_hooked.emulator.create_membership(
        email="ines.duarte@example.com", name="Inês Duarte", username="ines_d"
    )
    events = _delivered(whop_hooked, whop_receiver)
    assert [e["type"] for e in events] == ["member.created", "membership.activated"]
    created = events[0]
    member = whop_hooked.get(f"/members/{membership['member_id']}").json()
    assert created["data"] == member and member["id"] == membership["member_id"]
    assert (member["email"], member["display_name"], member["user"]["username"]) == (
        "ines.duarte@example.com",
        "Inês Duarte",
        "ines_d",
    )
    assert (member["access_level"], member["status"]) == ("customer", "joined")
    assert "previous_attributes" not in created
    assert (created["api_version"], created["account_id"]) == ("v1", whop_hooked.dataset.account.id)
    payload = PostMemberCreatedPayload.model_validate(created)
    assert payload.type == "member.created" and payload.data.id == member["id"]
    assert whop_shape_problems(PostMemberCreatedPayload, created, may_omit=OPTIONAL) == []
    # An existing buyer is not created again.
    whop_hooked.emulator.create_membership(member_id=member["id"])
    later = _delivered(whop_hooked, whop_receiver)[2:]
    assert [e["type"] for e in later] == ["membership.activated"]


def test_profile_change_sends_member_updated_and_shows_in_reads(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    """Fact: Whop v1 sends ``member.updated`` with ``data`` the ``Member`` after the change and
    ``previous_attributes`` holding the old values of the fields that changed (whop-sdk
    ``PostMemberUpdatedPayload``); ``display_name`` is the user's name (whop-sdk ``Member``)."""
    member = _person(whop_hooked)
    before = whop_hooked.get(f"/members/{member.id}").json()
    response = whop_hooked.control(
        "POST",
        f"/members/{member.id}",
        json={"name": "Renamed Person", "email": "renamed.person@example.org"},
    )
    assert response.status_code == 200
    after = response.json()
    assert after == whop_hooked.get(f"/members/{member.id}").json()
    assert (after["user"]["name"], after["display_name"], after["email"]) == (
        "Renamed Person",
        "Renamed Person",
        "renamed.person@example.org",
    )
    assert {k for k in after if after[k] != before[k]} == {"user", "display_name", "email"}
    (event,) = _delivered(whop_hooked, whop_receiver)
    assert event["type"] == "member.updated" and event["data"] == after
    assert event["previous_attributes"] == {
        "user": before["user"],
        "display_name": before["display_name"],
        "email": before["email"],
    }
    payload = PostMemberUpdatedPayload.model_validate(event)
    assert payload.data.email == "renamed.person@example.org"
    assert whop_shape_problems(PostMemberUpdatedPayload, event, may_omit=OPTIONAL) == []
    # The list and its search see the new values; so does the official client.
    listed = {r["id"]: r for r in whop_hooked.list_all("members")}
    assert listed[member.id] == after
    for query in ("renamed person", "renamed.person@example.org"):
        assert [r["id"] for r in whop_hooked.list_all("members", query=query)] == [member.id]
    assert whop_hooked.list_all("members", query=before["email"]) == []
    sdk_member = whop_hooked.sdk().members.retrieve(member.id)
    assert (sdk_member.display_name, sdk_member.email) == (
        "Renamed Person",
        "renamed.person@example.org",
    )
    # Payments render the member's user and email.
    payment = next(p for p in whop_hooked.dataset.payments if p.member_id == member.id)
    paid = whop_hooked.get(f"/payments/{payment.id}").json()
    assert (paid["customer_email"], paid["user"]["name"]) == (
        "renamed.person@example.org",
        "Renamed Person",
    )


def test_username_change_and_cleared_name_follow_display_name(whop_fresh: WhopEnv) -> None:
    """Fact: ``Member.display_name`` is the user's name, or their username when they have not set
    one (whop-sdk ``types/member.py``); ``name`` and ``email`` are nullable there."""
    member = _person(whop_fresh)
    after = whop_fresh.emulator.update_member(
        member.id, name=None, email=None, username="fresh_handle"
    )
    assert after["user"]["username"] == after["display_name"] == "fresh_handle"
    assert after["user"]["name"] is None and after["email"] is None
    assert whop_fresh.get(f"/members/{member.id}").json() == after
    parsed = SdkMember.model_validate(after)
    assert parsed.user is not None and parsed.user.name is None and parsed.email is None
    back = whop_fresh.emulator.update_member(member.id, name="Back Again")
    assert back["display_name"] == "Back Again"


def test_access_moves_send_member_updated_after_the_membership_events(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    """Fact: ``member.updated`` carries the ``Member`` whenever its fields change, and a member's
    ``access_level`` (``customer`` / ``no_access``) and ``status`` (``joined`` / ``left``) follow
    its memberships (whop-sdk ``Member``; ``docs/whop-api.md#webhooks``)."""
    membership_id, member_id = _sole_active(whop_hooked)
    whop_hooked.emulator.update_membership(membership_id, status="canceled")
    events = _delivered(whop_hooked, whop_receiver)
    assert [e["type"] for e in events] == [
        "membership.updated",
        "membership.deactivated",
        "member.updated",
    ]
    lost = events[-1]
    assert lost["data"] == whop_hooked.get(f"/members/{member_id}").json()
    assert (lost["data"]["access_level"], lost["data"]["status"]) == ("no_access", "left")
    assert lost["previous_attributes"] == {"access_level": "customer", "status": "joined"}
    PostMemberUpdatedPayload.model_validate(lost)
    # A new membership gives the access back: membership.activated, then member.updated.
    whop_hooked.emulator.create_membership(member_id=member_id)
    regained = _delivered(whop_hooked, whop_receiver)[len(events) :]
    assert [e["type"] for e in regained] == ["membership.activated", "member.updated"]
    assert regained[1]["previous_attributes"] == {"access_level": "no_access", "status": "left"}
    assert regained[1]["data"]["access_level"] == "customer"


def test_changes_that_move_no_member_field_send_no_member_event(
    whop_hooked: WhopEnv, whop_receiver: WhopReceiver
) -> None:
    """Fact: ``member.updated`` reports a change of the ``Member`` (with ``previous_attributes``
    of the fields that changed, whop-sdk ``PostMemberUpdatedPayload``): no change, no event."""
    member = _person(whop_hooked)
    same = whop_hooked.control(
        "POST", f"/members/{member.id}", json={"name": member.name, "email": member.email}
    )
    assert same.status_code == 200
    assert same.json() == whop_hooked.get(f"/members/{member.id}").json()
    membership = next(
        ms
        for ms in whop_hooked.dataset.memberships
        if ms.status == "active" and not ms.cancel_at_period_end
    )
    whop_hooked.emulator.update_membership(membership.id, cancel_at_period_end=True)  # stays valid
    events = _delivered(whop_hooked, whop_receiver)
    assert all(not e["type"].startswith("member.") for e in events) and events


def test_members_created_after_the_list_start_are_found(whop_fresh: WhopEnv) -> None:
    """Fact: ``GET /members`` takes ``created_after`` (whop-sdk ``MembersClient.list``), so an
    incremental read from the last run's start finds the members created since."""
    ds = whop_fresh.dataset
    start = iso(ds.members[-1].created_at)  # the newest generated member
    assert whop_fresh.list_all("members", created_after=start) == []
    first = whop_fresh.emulator.create_membership(email="one@example.com", username="buyer_one")
    second = whop_fresh.control(
        "POST", "/memberships", json={"email": "two@example.com", "username": "buyer_two"}
    ).json()
    new_ids = [second["member_id"], first["member_id"]]  # newest first
    assert [r["id"] for r in whop_fresh.list_all("members", created_after=start)] == new_ids
    ascending = whop_fresh.list_all("members", created_after=start, direction="asc")
    assert [r["id"] for r in ascending] == new_ids[::-1]
    assert ascending[0] == whop_fresh.get(f"/members/{first['member_id']}").json()
    client = whop_fresh.sdk(max_retries=0)
    got = client.members.list(account_id=ds.account.id, created_after=start, first=100)
    assert [m.id for m in got] == new_ids
    # Bounds are exclusive on members as on the other lists.
    created = ds.get("members", first["member_id"]).created_at
    assert [r["id"] for r in whop_fresh.list_all("members", created_after=iso(created))] == new_ids[
        :1
    ]
    assert first["member_id"] not in {
        r["id"] for r in whop_fresh.list_all("members", created_before=iso(created))
    }


def test_generated_members_filter_on_created_window(whop_fresh: WhopEnv) -> None:
    """Fact: ``GET /members`` takes ``created_after`` and ``created_before`` (whop-sdk
    ``MembersClient.list``); the emulator treats both bounds as exclusive."""
    members = whop_fresh.dataset.members
    low, high = members[5].created_at, members[20].created_at
    got = whop_fresh.list_all("members", created_after=iso(low), created_before=iso(high))
    assert {r["id"] for r in got} == {m.id for m in members if low < m.created_at < high}
    assert len(got) >= 10


def test_member_control_endpoint_validates_and_changes_nothing_on_error(
    whop_fresh: WhopEnv,
) -> None:
    """Fact: Whop answers bad input with ``{"error": {"type", "message", "code", "param"}}``
    (whop-sdk error bodies); a business buyer has no user (``Member.user`` is ``null``), so it has
    no name, username or email to change."""
    member = _person(whop_fresh)
    other = next(m for m in whop_fresh.dataset.members if m.user_id and m.id != member.id)
    business = next(m for m in whop_fresh.dataset.members if m.user_id is None)
    before = whop_fresh.get(f"/members/{member.id}").json()
    for body, param in (
        ({}, "body"),
        ({"nickname": "x"}, "nickname"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a b@example.com"}, "email"),
        ({"username": ""}, "username"),
        ({"username": None}, "username"),
        ({"name": "Fine", "username": other.username.upper()}, "username"),
        ({"display_name": "Nope"}, "display_name"),
    ):
        response = whop_fresh.control("POST", f"/members/{member.id}", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["type"] == "bad_request"
        assert response.json()["error"]["param"] == param, body
    assert whop_fresh.get(f"/members/{member.id}").json() == before
    refused = whop_fresh.control("POST", f"/members/{business.id}", json={"name": "Initrode"})
    assert refused.status_code == 400 and "business buyer" in refused.json()["error"]["message"]
    missing = whop_fresh.control("POST", "/members/mber_missing0000000", json={"name": "X"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"
    counts = whop_fresh.dataset.counts()
    taken = whop_fresh.control("POST", "/memberships", json={"username": other.username})
    assert taken.status_code == 400 and taken.json()["error"]["param"] == "username"
    assert whop_fresh.dataset.counts() == counts  # no member, no membership


def test_reset_restores_changed_members(whop_fresh: WhopEnv) -> None:
    """Fact (emulator contract, ``/_sandbox/reset?data=true``): a data reset gives back the
    generated dataset, members included."""
    original = whop_fresh.dataset.rendered("members")
    member = _person(whop_fresh)
    whop_fresh.emulator.update_member(member.id, name="Temporary", username="temp_user")
    membership_id, _ = _sole_active(whop_fresh)
    whop_fresh.emulator.update_membership(membership_id, status="expired")
    whop_fresh.emulator.create_membership(email="gone@example.com")
    assert whop_fresh.dataset.rendered("members") != original
    assert whop_fresh.control("POST", "/reset", params={"data": "true"}).status_code == 200
    assert whop_fresh.dataset.rendered("members") == original
