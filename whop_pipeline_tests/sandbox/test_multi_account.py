"""Several Whop accounts and Twenty workspaces in one sandbox (``start_sandbox(accounts=N)``,
``whop-pipeline sandbox --accounts N``): the API key picks the account, nothing leaks between
accounts, and the control routes address one account at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from whop_sdk.lib.verify_webhook import WebhookVerificationError, unwrap

from whop_pipeline.cli import build_parser
from whop_pipeline.cli import sandbox as sandbox_command
from whop_pipeline.sandbox import runner
from whop_pipeline.sandbox.common import RequestStats
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline_tests.sandbox.whop_fixtures import WHOP_NOW, WHOP_TLS, WhopReceiver

pytestmark = pytest.mark.sandbox

PEOPLE_KINDS = ("members", "memberships", "payments")
SECRET_1 = "ws_1111111111111111111111111111111111111111111111aa"
SECRET_2 = "ws_2222222222222222222222222222222222222222222222bb"


@pytest.fixture(scope="module")
def two() -> Iterator[runner.Sandbox]:
    """Two accounts, read-only (tests that change data start their own)."""
    with runner.start_sandbox("tiny", seed=5, now=WHOP_NOW, accounts=2) as sandbox:
        yield sandbox


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(verify=WHOP_TLS, timeout=30) as client:
        yield client


def whop_get(
    http: httpx.Client, sandbox: runner.Sandbox, key: str, path: str, **params: Any
) -> httpx.Response:
    return http.get(
        f"{sandbox.whop_base_url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {key}"},
    )


def list_ids(http: httpx.Client, sandbox: runner.Sandbox, key: str, kind: str, **params: Any):
    ids, after = [], None
    while True:
        query = {"first": 100, **params, **({"after": after} if after else {})}
        response = whop_get(http, sandbox, key, f"/{kind}", **query)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [row["id"] for row in body["data"]]
        if not body["page_info"]["has_next_page"]:
            return sorted(ids)
        after = body["page_info"]["end_cursor"]


def twenty(http: httpx.Client, sandbox: runner.Sandbox, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.twenty_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_each_account_is_its_seed_with_its_own_id_and_key(two: runner.Sandbox) -> None:
    """Rule: account i is the preset generated with seed ``seed + i - 1``; its account id comes
    from that seed (so ids differ) and its keys are ``key`` (i = 1) or ``f"{key}-{i}"``."""
    first, second = two.accounts
    assert (first.index, first.seed, second.index, second.seed) == (1, 5, 2, 6)
    for account in two.accounts:
        expected = generate_dataset("tiny", seed=account.seed, now=WHOP_NOW)
        assert account.account_id == expected.account.id
        assert [m.id for m in account.whop.dataset.members] == [m.id for m in expected.members]
    assert first.account_id != second.account_id and first.account_id.startswith("biz_")
    assert (first.whop_api_key, second.whop_api_key) == ("sandbox-whop-key", "sandbox-whop-key-2")
    assert (first.twenty_api_key, second.twenty_api_key) == (
        "sandbox-twenty-key",
        "sandbox-twenty-key-2",
    )
    assert two.account(2) is second and (two.whop, two.twenty) == (first.whop, first.twenty)
    with pytest.raises(IndexError):
        two.account(3)


def test_each_key_lists_only_its_own_account(two: runner.Sandbox, http: httpx.Client) -> None:
    """Rule: a list authenticated with account i's key returns exactly account i's members,
    memberships and payments, with or without its own ``account_id``."""
    for account in two.accounts:
        for kind in PEOPLE_KINDS:
            own = sorted(r.id for r in account.whop.dataset.records(kind))
            key = account.whop_api_key
            assert list_ids(http, two, key, kind) == own
            assert list_ids(http, two, key, kind, account_id=account.account_id) == own
    first, second = two.accounts
    for kind in PEOPLE_KINDS:
        ones = {r.id for r in first.whop.dataset.records(kind)}
        assert not ones & {r.id for r in second.whop.dataset.records(kind)}


def test_another_accounts_data_is_out_of_reach(two: runner.Sandbox, http: httpx.Client) -> None:
    """Rule (the single-account rules for a resource outside the key's reach): a list asked with
    another account's ``account_id`` is a 200 with zero rows, and another account's member,
    membership or payment retrieved by id is the 404 ``not_found`` of an unknown id. Products,
    variants and plans stay public reads, served to any valid key or none. An unknown key is a
    401."""
    first, second = two.accounts
    key = first.whop_api_key
    for kind in (*PEOPLE_KINDS, "products", "variants"):
        assert list_ids(http, two, key, kind, account_id=second.account_id) == []
    for kind in PEOPLE_KINDS:
        theirs = second.whop.dataset.records(kind)[0].id
        response = whop_get(http, two, key, f"/{kind}/{theirs}")
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"
        assert whop_get(http, two, second.whop_api_key, f"/{kind}/{theirs}").status_code == 200
    product = second.whop.dataset.products[0].id
    public = whop_get(http, two, key, f"/products/{product}")
    assert public.status_code == 200 and public.json()["id"] == product
    anonymous = http.get(f"{two.whop_base_url}/products/{product}")
    assert anonymous.status_code == 200 and anonymous.json() == public.json()
    member = first.whop.dataset.members[0].id
    for bad in ("sandbox-whop-key-3", "nope"):
        response = whop_get(http, two, bad, f"/members/{member}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_account_and_workspace_listings(two: runner.Sandbox, http: httpx.Client) -> None:
    """Control: ``GET /_sandbox/accounts`` (Whop) and ``GET /_sandbox/workspaces`` (Twenty) list
    every account / workspace in order, with its key."""
    first, second = two.accounts
    assert http.get(f"{two.whop_server.url}/_sandbox/accounts").json() == [
        {"id": first.account_id, "api_key": "sandbox-whop-key", "seed": 5},
        {"id": second.account_id, "api_key": "sandbox-whop-key-2", "seed": 6},
    ]
    workspaces = http.get(f"{two.twenty_url}/_sandbox/workspaces").json()
    assert workspaces == [
        {"id": first.workspace_id, "api_key": "sandbox-twenty-key"},
        {"id": second.workspace_id, "api_key": "sandbox-twenty-key-2"},
    ]
    assert first.workspace_id != second.workspace_id


def test_control_routes_address_one_account() -> None:
    """Control: without ``?account=`` the routes act on account 1 as before; with it, on that
    account only (stats, dump, changes); an unknown account is a 404."""
    with (
        runner.start_sandbox("tiny", now=WHOP_NOW, accounts=2) as sandbox,
        httpx.Client(base_url=sandbox.whop_server.url, verify=WHOP_TLS) as control,
    ):
        first, second = sandbox.accounts
        membership = second.whop.dataset.memberships[0].id
        changed = control.post(
            f"/_sandbox/memberships/{membership}",
            params={"account": second.account_id},
            json={"status": "canceled"},
        )
        assert changed.status_code == 200 and changed.json()["status"] == "canceled"
        assert second.whop.dataset.get("memberships", membership).status == "canceled"
        missing = control.post(f"/_sandbox/memberships/{membership}", json={"status": "canceled"})
        assert missing.status_code == 404  # account 1 has no such membership
        whop_get(control, sandbox, second.whop_api_key, "/members", first=1)
        whop_get(control, sandbox, second.whop_api_key, "/payments", first=1)
        stats_2 = control.get("/_sandbox/stats", params={"account": second.account_id}).json()
        assert stats_2["total"] == 2 and control.get("/_sandbox/stats").json()["total"] == 0
        assert control.get("/_sandbox/dump").json()["account"]["id"] == first.account_id
        dump_2 = control.get("/_sandbox/dump", params={"account": second.account_id}).json()
        assert (dump_2["account"]["id"], dump_2["seed"]) == (second.account_id, 1)
        unknown = control.get("/_sandbox/stats", params={"account": "biz_unknown"})
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"


def test_twenty_records_and_metadata_stay_in_their_workspace() -> None:
    """Rule: each Twenty key is its own workspace: records written with workspace 2's key, and
    custom objects and fields it creates, are invisible with workspace 1's key."""
    with runner.start_sandbox("tiny", now=WHOP_NOW, accounts=2) as sandbox, httpx.Client() as h:
        one = twenty(h, sandbox, sandbox.account(1).twenty_api_key)
        two = twenty(h, sandbox, sandbox.account(2).twenty_api_key)
        created = two.post("/rest/people", json={"emails": {"primaryEmail": "w2@x.com"}})
        assert created.status_code == 201
        assert two.get("/rest/people").json()["totalCount"] == 1
        assert one.get("/rest/people").json()["totalCount"] == 0
        person_id = created.json()["data"]["createPerson"]["id"]
        assert one.get(f"/rest/people/{person_id}").status_code == 404
        ws2 = sandbox.account(2).workspace_id
        assert len(h.get(f"{sandbox.twenty_url}/_sandbox/dump").json()["people"]) == 0
        dump_2 = h.get(f"{sandbox.twenty_url}/_sandbox/dump", params={"workspace": ws2}).json()
        assert [p["id"] for p in dump_2["people"]] == [person_id]

        person = _object(two, "person")
        field = {"objectMetadataId": person["id"], "type": "TEXT", "name": "whopUserId"}
        assert two.post("/rest/metadata/fields", json={**field, "label": "W"}).status_code == 201
        custom = {"nameSingular": "whopProduct", "namePlural": "whopProducts"}
        labels = {"labelSingular": "Whop product", "labelPlural": "Whop products"}
        assert two.post("/rest/metadata/objects", json={**custom, **labels}).status_code == 201
        names_1 = {o["nameSingular"] for o in _objects(one)}
        assert "whopProduct" not in names_1 and "whopProduct" in {
            o["nameSingular"] for o in _objects(two)
        }
        assert "whopUserId" not in {f["name"] for f in _object(one, "person")["fields"]}
        refused = one.post("/rest/people", json={"whopUserId": "u1"})
        assert refused.status_code == 400
        accepted = two.post("/rest/people", json={"whopUserId": "u1"})
        assert accepted.status_code == 201
        one.close()
        two.close()


def _objects(client: httpx.Client) -> list[dict[str, Any]]:
    return client.get("/rest/metadata/objects").json()["data"]["objects"]


def _object(client: httpx.Client, singular: str) -> dict[str, Any]:
    return next(o for o in _objects(client) if o["nameSingular"] == singular)


def test_twenty_rate_limits_are_per_workspace() -> None:
    """Rule: each workspace has its own throttle: exhausting workspace 1's per-minute budget
    leaves workspace 2 answering 200. Each workspace's ``/_sandbox/stats`` shows its calls, its
    429s and its busiest 60-second window (all calls, and calls not refused)."""
    with runner.start_sandbox("tiny", now=WHOP_NOW, accounts=2) as sandbox, httpx.Client() as h:
        ws2 = sandbox.account(2).workspace_id
        limit = h.post(f"{sandbox.twenty_url}/_sandbox/rate-limit", json={"perMinute": 3})
        assert limit.status_code == 200
        one = twenty(h, sandbox, sandbox.account(1).twenty_api_key)
        two = twenty(h, sandbox, sandbox.account(2).twenty_api_key)
        assert [one.get("/rest/people").status_code for _ in range(5)] == [200] * 3 + [429] * 2
        assert [two.get("/rest/people").status_code for _ in range(4)] == [200] * 4
        stats_1 = h.get(f"{sandbox.twenty_url}/_sandbox/stats").json()
        stats_2 = h.get(f"{sandbox.twenty_url}/_sandbox/stats", params={"workspace": ws2}).json()
        windows = ("total", "throttled", "max_calls_in_window", "max_admitted_in_window")
        assert [stats_1[k] for k in windows] == [5, 2, 5, 3]
        assert [stats_2[k] for k in windows] == [4, 0, 4, 4]
        assert stats_1["window_seconds"] == 60
        h.post(f"{sandbox.twenty_url}/_sandbox/rate-limit?workspace={ws2}", json={"perMinute": 1})
        # Lowering a limit keeps at most the new capacity: one more call, then 429.
        assert [two.get("/rest/people").status_code for _ in range(2)] == [200, 429]
        assert [one.get("/rest/people").status_code for _ in range(1)] == [429]
        unknown = h.get(f"{sandbox.twenty_url}/_sandbox/stats", params={"workspace": "nope"})
        assert unknown.status_code == 404
        one.close()
        two.close()


def test_busiest_window_counts_exactly() -> None:
    """Rule: ``max_calls_in_window`` is the most calls inside any window of ``window_seconds``
    (a call exactly ``window_seconds`` older has left it); 429s count in calls, not in admitted."""
    clock = iter([0.0, 10.0, 59.0, 60.0, 61.0, 200.0, 200.5]).__next__
    stats = RequestStats(window_seconds=60, clock=clock)
    for status in (200, 429, 200, 200, 200, 429, 200):
        stats.record("GET", "/rest/people", "", status)
    snapshot = stats.snapshot()
    assert (snapshot["max_calls_in_window"], snapshot["max_admitted_in_window"]) == (4, 3)
    stats.reset()
    assert stats.snapshot()["max_calls_in_window"] == 0


def test_each_account_delivers_its_own_webhooks() -> None:
    """Rule: account i's changes are delivered only to account i's URL, signed with account i's
    secret, with account i's ``account_id``."""
    receiver_1, receiver_2 = WhopReceiver().start(), WhopReceiver().start()
    sandbox = runner.start_sandbox(
        "tiny",
        now=WHOP_NOW,
        accounts=2,
        webhook_url=receiver_1.url,
        webhook_secret=SECRET_1,
        webhook_retry_delays=(0.05,),
    )
    try:
        first, second = sandbox.accounts
        second.configure_webhooks(receiver_2.url, SECRET_2)
        assert sandbox.env(account=2)["WHOP_WEBHOOK_SECRET"] == SECRET_2
        second.whop.update_membership(second.whop.dataset.memberships[0].id, status="canceled")
        assert second.whop.wait_for_webhooks(5) and first.whop.wait_for_webhooks(5)
        assert receiver_1.received == [] and receiver_2.received
        for body, headers, _ in receiver_2.received:
            assert unwrap(body, headers=headers, key=SECRET_2)["account_id"] == second.account_id
            with pytest.raises(WebhookVerificationError):
                unwrap(body, headers=headers, key=SECRET_1)
        count_2 = len(receiver_2.received)
        first.whop.update_membership(first.whop.dataset.memberships[0].id, status="canceled")
        assert first.whop.wait_for_webhooks(5)
        assert receiver_1.received and len(receiver_2.received) == count_2
        for body, headers, _ in receiver_1.received:
            assert unwrap(body, headers=headers, key=SECRET_1)["account_id"] == first.account_id
    finally:
        sandbox.stop()
        receiver_1.stop()
        receiver_2.stop()
    # stop() closed every account: a change no longer queues a delivery.
    second.whop.update_membership(second.whop.dataset.memberships[1].id, status="canceled")
    assert second.whop.webhooks.pending() == 0


def test_env_and_describe_cover_every_account(two: runner.Sandbox) -> None:
    """Python API: ``env(account=i)`` points the pipeline at account i on the shared ports;
    ``describe`` names every account's id and keys."""
    second = two.account(2)
    assert two.env(account=2) == {
        "WHOP_API_KEY": "sandbox-whop-key-2",
        "WHOP_ACCOUNT_ID": second.account_id,
        "WHOP_API_BASE_URL": two.whop_base_url,
        "TWENTY_API_URL": two.twenty_url,
        "TWENTY_API_KEY": "sandbox-twenty-key-2",
    }
    assert two.env() == two.env(account=1) and two.env(account=2, X="1")["X"] == "1"
    text = runner.describe(two, "tiny")
    for account in two.accounts:
        assert account.account_id in text and account.twenty_api_key in text
        assert account.whop_api_key in text


def test_one_account_is_the_default(http: httpx.Client) -> None:
    """Rule: without ``accounts`` the sandbox is a single account, listed alone."""
    with runner.start_sandbox("tiny", now=WHOP_NOW) as sandbox:
        assert [a.index for a in sandbox.accounts] == [1]
        assert http.get(f"{sandbox.whop_server.url}/_sandbox/accounts").json() == [
            {"id": sandbox.whop.account_id, "api_key": "sandbox-whop-key", "seed": 0}
        ]
        assert "account 1:" not in runner.describe(sandbox, "tiny")
    with pytest.raises(ValueError, match="accounts must be a positive integer"):
        runner.start_sandbox("tiny", now=WHOP_NOW, accounts=0)


def test_cli_takes_accounts() -> None:
    """Rule: ``whop-pipeline sandbox --accounts N`` parses N (default 1)."""
    assert build_parser().parse_args(["sandbox", "--accounts", "3"]).accounts == 3
    assert build_parser().parse_args(["sandbox"]).accounts == 1


@pytest.mark.parametrize("accounts", ["0", "-2"])
def test_cli_refuses_fewer_than_one_account(
    accounts: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rule: fewer than one account is a usage error (exit code 2), before anything starts."""
    args = build_parser().parse_args(["sandbox", "--accounts", accounts, "--whop-port", "0"])
    assert sandbox_command.main(args) == 2
    assert "--accounts must be a positive integer" in capsys.readouterr().out
