"""An OAuth 2.1 authorization server for one registered app, on the Whop emulator's host root.

The facts it follows are in docs/whop-api.md#oauth; the routes are in ``oauth_routes.py``, the
app's settings and helpers in ``oauth_common.py``. In short:

- Authorization code with PKCE (``S256`` only, required on every request), ``state`` echoed back,
  ``nonce`` required with the ``openid`` scope, ``company_id`` picking the account the grant is for
  (default: the first account). A code is single use and expires after 10 minutes; using one again
  is an ``invalid_grant`` and revokes what it issued (RFC 6749 §4.1.2).
- Client authentication at the token endpoint with ``client_secret`` in the body or HTTP Basic
  (RFC 6749 §2.3.1), never both. ``client_secret=None`` registers a public client, which sends only
  ``client_id`` (and its PKCE verifier).
- Access tokens are opaque, last ``token_lifetime`` seconds and work on ``/api/v1`` exactly like the
  granted account's API key (scopes are recorded, not enforced). Refresh tokens rotate: each use
  returns a new one and the old one is refused from then on.
- With ``openid``, the token answer carries an ``id_token``: a JWT signed HS256 with the client
  secret (unsigned, ``alg: none``, for a public client) with ``iss``, ``sub``, ``aud``, ``iat``,
  ``exp`` and the ``nonce`` of the authorization request.
- Times come from the emulator clock (``SandboxClock``), so tests age codes and tokens without
  waiting.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from whop_pipeline.sandbox.whop.clock import SandboxClock
from whop_pipeline.sandbox.whop.oauth_common import (
    CODE_LIFETIME,
    CONSENT_DECISIONS,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    DEFAULT_TOKEN_LIFETIME,
    SCOPE_TOKEN,
    OAuthConfig,
    OAuthError,
    PageError,
    RedirectError,
    SandboxUser,
    make_jwt,
    pkce_challenge,
)

if TYPE_CHECKING:
    from whop_pipeline.sandbox.whop.app import WhopEmulator


@dataclass
class AuthRequest:
    """A validated authorization request."""

    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    challenge: str
    account_id: str


@dataclass
class _Grant:
    """What one consent produced: its code and every token issued from it."""

    account_id: str
    scope: str
    nonce: str | None
    redirect_uri: str
    challenge: str
    issued_at: float
    used: bool = False
    tokens: set[str] = field(default_factory=set)


@dataclass
class _Token:
    account_id: str
    scope: str
    grant: _Grant
    expires_at: float | None = None  # access tokens only
    revoked: bool = False


class OAuthServer:
    """Grants, codes and tokens for ``accounts``; thread-safe. Registers itself on each account so
    the account accepts its access tokens."""

    def __init__(
        self,
        accounts: Sequence[WhopEmulator],
        config: OAuthConfig | None = None,
        *,
        clock: SandboxClock | None = None,
        user: SandboxUser | None = None,
    ) -> None:
        if not accounts:
            raise ValueError("at least one account is needed")
        self.accounts = {a.account_id: a for a in accounts}
        self.default_account = accounts[0].account_id
        self.config = config or OAuthConfig()
        self.clock = clock or accounts[0].clock
        self.user = user or SandboxUser()
        self.consent = "ask"
        self._lock = threading.Lock()
        self._codes: dict[str, _Grant] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        for account in accounts:
            account.oauth = self

    # -- authorization --------------------------------------------------------------------------

    def check_client(self, params: Mapping[str, str]) -> None:
        """The client and its redirect URI; a ``PageError`` when either is wrong (never
        redirect to an unverified URI: RFC 6749 §4.1.2.1)."""
        client_id = params.get("client_id")
        if not client_id:
            raise PageError("invalid_request", "client_id is missing")
        if client_id != self.config.client_id:
            raise PageError("invalid_client", f"Unknown client_id {client_id}")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise PageError("invalid_request", "redirect_uri is missing")
        if redirect_uri != self.config.redirect_uri:
            raise PageError(
                "invalid_request", "redirect_uri does not match the app's registered redirect URI"
            )

    def authorization_request(self, params: Mapping[str, str]) -> AuthRequest:
        """Validate an authorization request; ``PageError`` or ``RedirectError`` when invalid."""
        self.check_client(params)
        response_type = params.get("response_type")
        if response_type != "code":
            raise RedirectError("unsupported_response_type", "response_type must be code")
        scope = " ".join((params.get("scope") or "").split())
        if not scope:
            raise RedirectError("invalid_scope", "scope is required (space-separated)")
        if not all(SCOPE_TOKEN.match(s) for s in scope.split()):
            raise RedirectError("invalid_scope", f"Malformed scope {scope!r}")
        challenge = params.get("code_challenge")
        if not challenge:
            raise RedirectError("invalid_request", "PKCE is required: send code_challenge (S256)")
        if params.get("code_challenge_method") != "S256":
            raise RedirectError("invalid_request", "code_challenge_method must be S256")
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
            raise RedirectError("invalid_request", "code_challenge is not a base64url SHA-256")
        nonce = params.get("nonce")
        if "openid" in scope.split() and not nonce:
            raise RedirectError("invalid_request", "nonce is required with the openid scope")
        account = params.get("company_id") or self.default_account
        if account not in self.accounts:
            raise RedirectError("invalid_request", f"Unknown company_id {account}")
        return AuthRequest(
            self.config.redirect_uri, scope, params.get("state"), nonce, challenge, account
        )

    def issue_code(self, request: AuthRequest) -> str:
        code = secrets.token_urlsafe(32)
        grant = _Grant(
            request.account_id,
            request.scope,
            request.nonce,
            request.redirect_uri,
            request.challenge,
            self.clock.now(),
        )
        with self._lock:
            self._codes[code] = grant
        return code

    def account_title(self, account_id: str) -> str:
        return self.accounts[account_id].dataset.account.title

    # -- token endpoint -------------------------------------------------------------------------

    def authenticate_client(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> None:
        """RFC 6749 §2.3.1: the secret in the body or in HTTP Basic, not both."""
        if basic is None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        elif "client_secret" in form:
            raise OAuthError("invalid_request", "Use one client authentication method, not two")
        else:
            client_id, secret = basic
            if form.get("client_id") not in (None, client_id):
                raise OAuthError("invalid_client", "client_id does not match", 401)
        if client_id != self.config.client_id:
            raise OAuthError("invalid_client", "Unknown client", 401)
        expected = self.config.client_secret
        if expected is not None and not (
            secret and hmac.compare_digest(secret.encode(), expected.encode())
        ):
            raise OAuthError("invalid_client", "Client authentication failed", 401)

    def token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, issuer: str
    ) -> dict[str, Any]:
        """The token endpoint's answer for ``form``; ``OAuthError`` otherwise."""
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is missing")
        self.authenticate_client(form, basic)
        if grant_type == "authorization_code":
            return self._exchange_code(form, issuer)
        if grant_type == "refresh_token":
            return self._refresh_tokens(form, issuer)
        raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type}")

    def _exchange_code(self, form: Mapping[str, str], issuer: str) -> dict[str, Any]:
        code, verifier = form.get("code"), form.get("code_verifier")
        if not code:
            raise OAuthError("invalid_request", "code is missing")
        with self._lock:
            grant = self._codes.get(code)
            if grant is None:
                raise OAuthError("invalid_grant", "Unknown authorization code")
            if grant.used:
                self._revoke_grant(grant)
                raise OAuthError("invalid_grant", "The authorization code was already used")
            if self.clock.now() >= grant.issued_at + self.config.code_lifetime:
                raise OAuthError("invalid_grant", "The authorization code has expired")
            if form.get("redirect_uri") != grant.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri differs from the authorization's")
            if not verifier:
                raise OAuthError("invalid_grant", "code_verifier is missing")
            if not hmac.compare_digest(pkce_challenge(verifier), grant.challenge):
                raise OAuthError("invalid_grant", "code_verifier does not match code_challenge")
            grant.used = True
            return self._issue(grant, grant.scope, issuer, nonce=grant.nonce)

    def _refresh_tokens(self, form: Mapping[str, str], issuer: str) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request", "refresh_token is missing")
        with self._lock:
            old = self._refresh.get(presented)
            if old is None or old.revoked:
                raise OAuthError("invalid_grant", "The refresh token is invalid or was revoked")
            scope = " ".join((form.get("scope") or old.scope).split())
            if not set(scope.split()) <= set(old.scope.split()):
                raise OAuthError("invalid_scope", "A refresh cannot widen the granted scope")
            old.revoked = True  # rotation: the old refresh token is spent
            return self._issue(old.grant, scope, issuer, nonce=None)

    def _issue(
        self, grant: _Grant, scope: str, issuer: str, *, nonce: str | None
    ) -> dict[str, Any]:
        now = self.clock.now()
        lifetime = self.config.token_lifetime
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        self._access[access] = _Token(grant.account_id, scope, grant, now + lifetime)
        self._refresh[refresh] = _Token(grant.account_id, scope, grant)
        grant.tokens |= {access, refresh}
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": scope,
        }
        if "openid" in scope.split():
            claims: dict[str, Any] = {
                "iss": issuer,
                "sub": self.user.id,
                "aud": self.config.client_id,
                "iat": int(now),
                "exp": int(now + lifetime),
            }
            if nonce:
                claims["nonce"] = nonce
            answer["id_token"] = make_jwt(claims, self.config.client_secret)
        return answer

    def _revoke_grant(self, grant: _Grant) -> None:
        for token in grant.tokens:
            for table in (self._access, self._refresh):
                if token in table:
                    table[token].revoked = True

    # -- using tokens ---------------------------------------------------------------------------

    def _valid_access(self, token: str) -> _Token | None:
        with self._lock:
            found = self._access.get(token)
        if found is None or found.revoked or found.expires_at is None:
            return None
        return found if self.clock.now() < found.expires_at else None

    def account_of(self, token: str) -> str | None:
        """The account an unexpired, unrevoked access token was granted for, else None."""
        found = self._valid_access(token)
        return found.account_id if found else None

    def userinfo(self, token: str | None) -> dict[str, Any]:
        """The signed-in user (``sub``, ``username``, ``name``, ``email``, whatever the scopes)
        and ``account_id``, the account the token is scoped to."""
        found = self._valid_access(token) if token else None
        if found is None:
            raise OAuthError("invalid_token", "The access token is invalid or expired", 401)
        return {
            "sub": self.user.id,
            "username": self.user.username,
            "name": self.user.name,
            "email": self.user.email,
            "account_id": found.account_id,
        }

    # -- control (mirrors /_sandbox/oauth) ------------------------------------------------------

    def set_consent(self, decision: str) -> None:
        """What the next authorizations answer: ``approve`` / ``deny`` at once, or ``ask`` (the
        consent page)."""
        if decision not in CONSENT_DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(CONSENT_DECISIONS)}")
        self.consent = decision

    def revoke(self, refresh_token: str | None = None, *, all: bool = False) -> int:
        """Revoke one refresh token, or every one with ``all``; returns how many were live."""
        with self._lock:
            chosen = self._refresh.values() if all else [self._refresh.get(refresh_token or "")]
            live = [t for t in chosen if t is not None and not t.revoked]
            for token in live:
                token.revoked = True
            return len(live)

    def expire_access_tokens(self) -> int:
        """Every access token expires now; returns how many were still valid."""
        now = self.clock.now()
        with self._lock:
            live = [t for t in self._access.values() if not t.revoked and now < (t.expires_at or 0)]
            for token in live:
                token.expires_at = now
            return len(live)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._lock:
            live_access = sum(
                1 for t in self._access.values() if not t.revoked and now < (t.expires_at or 0)
            )
            live_refresh = sum(1 for t in self._refresh.values() if not t.revoked)
        return {
            "client_id": self.config.client_id,
            "public_client": self.config.client_secret is None,
            "redirect_uri": self.config.redirect_uri,
            "token_lifetime": self.config.token_lifetime,
            "code_lifetime": self.config.code_lifetime,
            "consent": self.consent,
            "user": {"id": self.user.id, "username": self.user.username},
            "accounts": list(self.accounts),
            "live_access_tokens": live_access,
            "live_refresh_tokens": live_refresh,
        }


__all__ = [
    "CODE_LIFETIME",
    "CONSENT_DECISIONS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_TOKEN_LIFETIME",
    "AuthRequest",
    "OAuthConfig",
    "OAuthError",
    "OAuthServer",
    "PageError",
    "RedirectError",
    "SandboxUser",
    "make_jwt",
    "pkce_challenge",
]
