"""Whop OAuth 2.1 (authorization code with PKCE) through Authlib's httpx client.

Authlib computes the S256 challenge, sends the verifier and parses RFC 6749 errors; this module
only says where Whop's endpoints are and what the pipeline asks for (docs/whop-api.md#oauth).
https://docs.authlib.org/en/latest/client/httpx.html
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from pydantic import BaseModel, ConfigDict, Field

from whop_pipeline.settings import SettingsError

DEFAULT_OAUTH_BASE_URL = "https://api.whop.com"
# What the pipeline reads, plus managing the webhook it registers for the connection.
DEFAULT_SCOPES = (
    "openid member:basic:read member:email:read payment:basic:read plan:basic:read "
    "access_pass:basic:read webhook_receive:memberships developer:manage_webhook"
)


class OAuthSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1, repr=False)
    redirect_uri: str = Field(min_length=1)
    scopes: str = DEFAULT_SCOPES
    base_url: str = DEFAULT_OAUTH_BASE_URL
    public_url: str = Field(min_length=1)

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/oauth/token"

    @property
    def userinfo_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/oauth/userinfo"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OAuthSettings:
        env = os.environ if environ is None else environ
        names = {
            "client_id": "WHOP_OAUTH_CLIENT_ID",
            "client_secret": "WHOP_OAUTH_CLIENT_SECRET",
            "redirect_uri": "WHOP_OAUTH_REDIRECT_URI",
            "public_url": "WHOP_PIPELINE_PUBLIC_URL",
        }
        missing = [var for var in names.values() if not env.get(var)]
        if missing:
            raise SettingsError(f"Whop OAuth is not configured: {', '.join(missing)} not set")
        return cls(
            **{field: env[var] for field, var in names.items()},
            scopes=env.get("WHOP_OAUTH_SCOPES") or DEFAULT_SCOPES,
            base_url=env.get("WHOP_OAUTH_BASE_URL") or DEFAULT_OAUTH_BASE_URL,
        )


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: dt.datetime | None
    scope: str | None = None


class OAuthFailure(RuntimeError):
    """An RFC 6749 error answer (``code`` e.g. ``invalid_grant``), or the server not answering."""

    def __init__(self, code: str, description: str = "") -> None:
        self.code = code
        super().__init__(f"{code}: {description}" if description else code)


def _client(settings: OAuthSettings) -> OAuth2Client:
    return OAuth2Client(
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        scope=settings.scopes,
        redirect_uri=settings.redirect_uri,
        code_challenge_method="S256",
        # Whop's token endpoint takes the client's credentials in the form body.
        token_endpoint_auth_method="client_secret_post",
        timeout=15.0,
    )


def authorization_url(
    settings: OAuthSettings, *, state: str, code_verifier: str, nonce: str, company_id: str | None
) -> str:
    extra = {"nonce": nonce}
    if company_id:
        extra["company_id"] = company_id
    with _client(settings) as client:
        url, _ = client.create_authorization_url(
            settings.authorize_url, state=state, code_verifier=code_verifier, **extra
        )
    return url


def _token_set(token: Mapping) -> TokenSet:
    expires_at = token.get("expires_at")
    return TokenSet(
        access_token=token["access_token"],
        refresh_token=token.get("refresh_token"),
        expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC) if expires_at else None,
        scope=token.get("scope"),
    )


def _failure(exc: Exception) -> OAuthFailure:
    if isinstance(exc, OAuthError):
        return OAuthFailure(exc.error or "oauth_error", exc.description or "")
    return OAuthFailure("server_unreachable", f"{type(exc).__name__}: {exc}")


def exchange_code(settings: OAuthSettings, *, code: str, code_verifier: str) -> TokenSet:
    with _client(settings) as client:
        try:
            token = client.fetch_token(
                settings.token_url,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
            )
        except Exception as exc:  # Authlib raises OAuthError; httpx its own
            raise _failure(exc) from None
    return _token_set(token)


def refresh(settings: OAuthSettings, refresh_token: str) -> TokenSet:
    with _client(settings) as client:
        try:
            token = client.refresh_token(settings.token_url, refresh_token=refresh_token)
        except Exception as exc:
            raise _failure(exc) from None
    tokens = _token_set(token)
    # A server that does not rotate keeps the old refresh token valid.
    return (
        tokens
        if tokens.refresh_token
        else TokenSet(tokens.access_token, refresh_token, tokens.expires_at, tokens.scope)
    )


def userinfo(settings: OAuthSettings, access_token: str) -> dict:
    with _client(settings) as client:
        client.token = {"access_token": access_token, "token_type": "Bearer"}
        response = client.get(settings.userinfo_url)
    if response.status_code != 200:
        raise OAuthFailure("userinfo_failed", f"HTTP {response.status_code}")
    return response.json()
