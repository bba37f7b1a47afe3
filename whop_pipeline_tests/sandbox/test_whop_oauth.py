"""The Whop emulator's OAuth 2.1 server (``whop_pipeline/sandbox/whop/oauth.py``): authorization code
with PKCE, rotating refresh tokens, userinfo, and access tokens that work on ``/api/v1`` like the
granted account's key. Facts: docs/whop-api.md#oauth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from whop_pipeline.cli import build_parser
from whop_pipeline.sandbox import runner
from whop_pipeline_tests.sandbox.whop_fixtures import WHOP_NOW, WHOP_TLS

pytestmark = pytest.mark.sandbox

SCOPE = "openid profile email member:basic:read"
SECRET = "test-oauth-secret"
REDIRECT = "http://127.0.0.1:8830/auth/whop/callback"
LIFETIME = 1800


@pytest.fixture(scope="module")
def sandbox() -> Iterator[runner.Sandbox]:
    with runner.start_sandbox(
        "tiny",
        seed=3,
        now=WHOP_NOW,
        accounts=2,
        oauth_client_id="app_testclient",
        oauth_client_secret=SECRET,
        oauth_redirect_uri=REDIRECT,
        oauth_token_lifetime=LIFETIME,
    ) as started:
        yield started


@pytest.fixture
def approving(sandbox: runner.Sandbox) -> Iterator[runner.Sandbox]:
    """The sandbox with consent preset to approve (tests that need another decision set it)."""
    sandbox.oauth.set_consent("approve")
    yield sandbox
    sandbox.oauth.set_consent("ask")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(verify=WHOP_TLS, timeout=30) as client:
        yield client


def oauth_client(sandbox: runner.Sandbox, **options: Any) -> OAuth2Client:
    config = sandbox.oauth.config
    return OAuth2Client(
        config.client_id,
        config.client_secret,
        scope=SCOPE,
        redirect_uri=config.redirect_uri,
        code_challenge_method="S256",
        verify=WHOP_TLS,
        **options,
    )


def authorize(
    sandbox: runner.Sandbox, client: OAuth2Client, verifier: str, **extra: str
) -> httpx.Response:
    """GET the authorization URL authlib builds (PKCE S256, state, nonce); not followed."""
    url, _ = client.create_authorization_url(
        sandbox.oauth_authorize_url, code_verifier=verifier, nonce="nonce-123", **extra
    )
    return httpx.get(url, follow_redirects=False)


def callback(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}


def tokens(
    sandbox: runner.Sandbox, client: OAuth2Client, **extra: str
) -> tuple[dict[str, Any], str]:
    """A full approved flow: the token response and the ``state`` sent."""
    verifier = generate_token(48)
    response = authorize(sandbox, client, verifier, **extra)
    token = client.fetch_token(
        sandbox.oauth_token_url,
        authorization_response=response.headers["location"],
        code_verifier=verifier,
    )
    return token, callback(response)["state"]


def post_token(http: httpx.Client, sandbox: runner.Sandbox, **form: str) -> httpx.Response:
    return http.post(sandbox.oauth_token_url, data=form)


def code_for(sandbox: runner.Sandbox, verifier: str) -> str:
    return callback(authorize(sandbox, oauth_client(sandbox), verifier))["code"]


def jwt_claims(token: str, secret: str) -> dict[str, Any]:
    header, payload, signature = token.split(".")
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(mac).decode().rstrip("=") == signature
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(row["id"] for row in response.json()["data"])


def test_code_flow_with_pkce_gives_tokens_for_the_granted_account(
    approving: runner.Sandbox,
) -> None:
    """Fact: authorization code + PKCE S256 at /oauth/authorize and /oauth/token gives
    ``{access_token, refresh_token, expires_in, token_type: Bearer, scope}`` (+ ``id_token`` with
    openid), and ``company_id`` scopes the token to that account: it lists that account's
    members like the account's own API key, and none of another account's."""
    second, first = approving.account(2), approving.account(1)
    client = oauth_client(approving)
    token, state = tokens(approving, client, company_id=second.account_id)
    assert (token["token_type"], token["expires_in"], token["scope"]) == ("Bearer", LIFETIME, SCOPE)
    assert token["access_token"] and token["refresh_token"] and state
    claims = jwt_claims(token["id_token"], SECRET)
    assert (claims["sub"], claims["aud"], claims["nonce"]) == (
        approving.oauth.user.id,
        "app_testclient",
        "nonce-123",
    )
    assert claims["exp"] - claims["iat"] == LIFETIME
    members = client.get(
        f"{approving.whop_base_url}/members", params={"account_id": second.account_id, "first": 100}
    )
    expected = sorted(m.id for m in second.whop.dataset.members)
    assert ids(members) == expected
    other = client.get(
        f"{approving.whop_base_url}/members", params={"account_id": first.account_id}
    )
    assert ids(other) == []


def test_without_company_id_the_grant_is_for_the_first_account(approving: runner.Sandbox) -> None:
    """Fact: ``company_id`` is optional; the emulator then grants its first (default) account."""
    client = oauth_client(approving)
    token, _ = tokens(approving, client)
    first = approving.account(1)
    assert approving.oauth.account_of(token["access_token"]) == first.account_id
    products = client.get(
        f"{approving.whop_base_url}/products", params={"account_id": first.account_id}
    )
    assert ids(products) == sorted(p.id for p in first.whop.dataset.products)


def test_consent_page_shows_user_and_account_then_approve_redirects_with_code(
    sandbox: runner.Sandbox, http: httpx.Client
) -> None:
    """Fact: without a preset decision the user sees a consent screen (who signs in, the account
    being granted, Approve / Deny); approving redirects to ``redirect_uri?code=…&state=…``."""
    sandbox.oauth.set_consent("ask")
    second = sandbox.account(2)
    page = authorize(
        sandbox, oauth_client(sandbox), generate_token(48), company_id=second.account_id
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for text in ("Approve", "Deny", sandbox.oauth.user.username, second.account_id):
        assert text in page.text
    form = dict(parse_qs(urlsplit(str(page.request.url)).query, keep_blank_values=True))
    fields = {k: v[-1] for k, v in form.items()} | {"decision": "approve"}
    approved = http.post(sandbox.oauth_authorize_url, data=fields)
    params = callback(approved)
    assert params["state"] == fields["state"] and params["code"]


def test_deny_redirects_with_access_denied(sandbox: runner.Sandbox) -> None:
    """Fact (RFC 6749 §4.1.2.1): a denied request redirects with ``error=access_denied`` and the
    ``state``; no code."""
    sandbox.oauth.set_consent("deny")
    try:
        response = authorize(sandbox, oauth_client(sandbox), generate_token(48), state="s-deny")
    finally:
        sandbox.oauth.set_consent("ask")
    params = callback(response)
    assert (params["error"], params["state"]) == ("access_denied", "s-deny")
    assert "code" not in params


def test_consent_can_be_preset_over_http(sandbox: runner.Sandbox, http: httpx.Client) -> None:
    """Sandbox control: ``POST /_sandbox/oauth/consent`` sets what the next authorizations answer."""
    base = sandbox.whop_server.url
    try:
        for decision in ("deny", "approve", "ask"):
            response = http.post(f"{base}/_sandbox/oauth/consent", json={"decision": decision})
            assert response.json() == {"consent": decision}
        bad = http.post(f"{base}/_sandbox/oauth/consent", json={"decision": "maybe"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "decision"
        assert http.get(f"{base}/_sandbox/oauth").json()["consent"] == "ask"
    finally:
        sandbox.oauth.set_consent("ask")


@pytest.mark.parametrize(
    "change",
    [{"redirect_uri": "http://127.0.0.1:8830/auth/whop/callback/"}, {"client_id": "app_unknown"}],
)
def test_bad_client_or_redirect_uri_shows_an_error_page_without_redirecting(
    approving: runner.Sandbox, change: dict[str, str]
) -> None:
    """Fact: ``redirect_uri`` must exactly match the registered one; RFC 6749 §4.1.2.1: with an
    unknown client or an unverified redirect URI the server never redirects: a 400 page."""
    client = oauth_client(approving)
    url, _ = client.create_authorization_url(
        approving.oauth_authorize_url, code_verifier=generate_token(48), nonce="n"
    )
    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()} | change
    response = httpx.get(approving.oauth_authorize_url, params=query, follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


def test_missing_pkce_challenge_redirects_with_invalid_request(approving: runner.Sandbox) -> None:
    """Fact: PKCE (S256) is part of the authorization request; without ``code_challenge`` the
    verified redirect URI gets ``error=invalid_request`` (RFC 6749 §4.1.2.1)."""
    config = approving.oauth.config
    query = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": "profile",
        "state": "s-pkce",
    }
    response = httpx.get(approving.oauth_authorize_url, params=query, follow_redirects=False)
    params = callback(response)
    assert (params["error"], params["state"]) == ("invalid_request", "s-pkce")


def test_wrong_verifier_is_invalid_grant(approving: runner.Sandbox, http: httpx.Client) -> None:
    """Fact: the token request's ``code_verifier`` must hash (SHA-256, base64url) to the
    ``code_challenge``; otherwise ``invalid_grant`` (400)."""
    code = code_for(approving, generate_token(48))
    response = post_token(
        http,
        approving,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id="app_testclient",
        client_secret=SECRET,
        code_verifier=generate_token(48),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    with pytest.raises(OAuthError) as caught:
        oauth_client(approving).fetch_token(
            approving.oauth_token_url, code=code, code_verifier=generate_token(48)
        )
    assert caught.value.error == "invalid_grant"


def test_code_is_single_use(approving: runner.Sandbox, http: httpx.Client) -> None:
    """Fact: an authorization code works once; the second exchange is ``invalid_grant`` and the
    tokens of the first are revoked (RFC 6749 §4.1.2)."""
    verifier = generate_token(48)
    code = code_for(approving, verifier)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "app_testclient",
        "client_secret": SECRET,
        "code_verifier": verifier,
    }
    first = post_token(http, approving, **form)
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    again = post_token(http, approving, **form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    access = first.json()["access_token"]
    assert approving.oauth.account_of(access) is None


def test_code_expires_after_ten_minutes(approving: runner.Sandbox, http: httpx.Client) -> None:
    """Fact: a code expires 10 minutes after it is issued (emulator clock): at 599 s it is
    exchanged, at 600 s it is ``invalid_grant``."""
    results = []
    for wait in (599, 600):
        verifier = generate_token(48)
        code = code_for(approving, verifier)
        approving.clock.advance(wait)
        response = post_token(
            http,
            approving,
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            client_id="app_testclient",
            client_secret=SECRET,
            code_verifier=verifier,
        )
        results.append((response.status_code, response.json().get("error")))
    assert results == [(200, None), (400, "invalid_grant")]


def test_wrong_client_secret_is_401_invalid_client(
    approving: runner.Sandbox, http: httpx.Client
) -> None:
    """Fact (RFC 6749 §5.2, §2.3.1): failed client authentication, with the secret in the body or
    in HTTP Basic, is 401 ``invalid_client``; the right secret in Basic works."""
    verifier = generate_token(48)
    code = code_for(approving, verifier)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    in_body = post_token(http, approving, client_id="app_testclient", client_secret="nope", **form)
    basic = http.post(approving.oauth_token_url, data=form, auth=("app_testclient", "nope"))
    for response in (in_body, basic):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.json()["error_description"]
    good = http.post(approving.oauth_token_url, data=form, auth=("app_testclient", SECRET))
    assert good.status_code == 200 and good.json()["token_type"] == "Bearer"


def test_unknown_grant_type_and_missing_parameters(
    approving: runner.Sandbox, http: httpx.Client
) -> None:
    """Fact (RFC 6749 §5.2): an unknown grant type is ``unsupported_grant_type``, a missing
    parameter ``invalid_request``, both 400."""
    auth = {"client_id": "app_testclient", "client_secret": SECRET}
    unknown = post_token(http, approving, grant_type="password", **auth)
    missing = post_token(http, approving, grant_type="authorization_code", **auth)
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unsupported_grant_type")
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")


def test_refresh_rotates_and_the_old_refresh_token_then_fails(
    approving: runner.Sandbox, http: httpx.Client
) -> None:
    """Fact: ``grant_type=refresh_token`` returns a new access token and a new refresh token; the
    old refresh token is refused from then on (``invalid_grant``), as is a revoked one."""
    client = oauth_client(approving)
    token, _ = tokens(approving, client)
    renewed = client.refresh_token(approving.oauth_token_url, refresh_token=token["refresh_token"])
    assert renewed["refresh_token"] != token["refresh_token"]
    assert renewed["access_token"] != token["access_token"]
    assert renewed["scope"] == SCOPE
    auth = {"client_id": "app_testclient", "client_secret": SECRET}
    reused = post_token(
        http, approving, grant_type="refresh_token", refresh_token=token["refresh_token"], **auth
    )
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    revoked = http.post(
        f"{approving.whop_server.url}/_sandbox/oauth/revoke",
        json={"refresh_token": renewed["refresh_token"]},
    )
    assert revoked.json() == {"revoked": 1}
    after = post_token(
        http, approving, grant_type="refresh_token", refresh_token=renewed["refresh_token"], **auth
    )
    assert (after.status_code, after.json()["error"]) == (400, "invalid_grant")


def test_expired_access_token_is_401_like_an_invalid_key(
    approving: runner.Sandbox, http: httpx.Client
) -> None:
    """Fact: an access token lasts ``expires_in`` seconds; after that ``/api/v1`` answers 401
    with the error body of an invalid API key. ``/_sandbox/oauth/expire`` expires every token."""
    base = approving.whop_base_url
    invalid = http.get(f"{base}/members", headers={"Authorization": "Bearer not-a-key"})
    for expire in ("clock", "control"):
        token, _ = tokens(approving, oauth_client(approving))
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get(f"{base}/members", headers=headers).status_code == 200
        if expire == "clock":
            approving.clock.advance(LIFETIME)
        else:
            expired = http.post(f"{approving.whop_server.url}/_sandbox/oauth/expire")
            assert expired.json() == {"expired": 1}
        response = http.get(f"{base}/members", headers=headers)
        assert response.status_code == 401 and response.json() == invalid.json()


def test_userinfo_names_the_user_and_the_granted_account(
    approving: runner.Sandbox, http: httpx.Client
) -> None:
    """Fact: ``GET /oauth/userinfo`` with the access token answers the user (``sub`` ``user_…``,
    ``username``, ``name``, ``email``) and the account the token is scoped to; a bad token is 401."""
    second = approving.account(2)
    token, _ = tokens(approving, oauth_client(approving), company_id=second.account_id)
    url = f"{approving.whop_server.url}/oauth/userinfo"
    info = http.get(url, headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    user = approving.oauth.user
    assert info == {
        "sub": user.id,
        "username": user.username,
        "name": user.name,
        "email": user.email,
        "account_id": second.account_id,
    }
    assert info["sub"].startswith("user_")
    bad = http.get(url, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_token"


def test_cli_and_describe_carry_the_oauth_app(sandbox: runner.Sandbox) -> None:
    """Python API / CLI: ``whop-pipeline sandbox --oauth-*`` parses the app's settings (defaults
    ``app_sandbox`` and a 3600 s lifetime); ``describe`` prints them with the endpoints."""
    args = build_parser().parse_args(
        [
            "sandbox",
            "--oauth-client-id",
            "app_x",
            "--oauth-client-secret",
            "s3",
            "--oauth-redirect-uri",
            "http://localhost:9/cb",
            "--oauth-token-lifetime",
            "60",
        ]
    )
    assert (args.oauth_client_id, args.oauth_client_secret) == ("app_x", "s3")
    assert (args.oauth_redirect_uri, args.oauth_token_lifetime) == ("http://localhost:9/cb", 60)
    defaults = build_parser().parse_args(["sandbox"])
    assert (defaults.oauth_client_id, defaults.oauth_token_lifetime) == ("app_sandbox", 3600)
    text = runner.describe(sandbox, "tiny")
    for part in ("app_testclient", SECRET, REDIRECT, "/oauth/authorize", "/oauth/token"):
        assert part in text
