"""The registered app, the sandbox user, OAuth errors and the small crypto helpers of the
emulator's OAuth server (``oauth.py``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CLIENT_ID = "app_sandbox"
DEFAULT_CLIENT_SECRET = "sandbox-oauth-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8830/auth/whop/callback"
DEFAULT_TOKEN_LIFETIME = 3600
CODE_LIFETIME = 600
CONSENT_DECISIONS = ("approve", "deny", "ask")
SCOPE_TOKEN = re.compile(r"^[a-z_]+(:[a-z_]+)*$")


@dataclass(frozen=True)
class OAuthConfig:
    """The one registered app: ``client_secret=None`` makes it a public client."""

    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str | None = DEFAULT_CLIENT_SECRET
    redirect_uri: str = DEFAULT_REDIRECT_URI
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    code_lifetime: int = CODE_LIFETIME

    def __post_init__(self) -> None:
        if not self.client_id or not self.redirect_uri:
            raise ValueError("an OAuth app needs a client id and a redirect URI")
        if self.token_lifetime <= 0 or self.code_lifetime <= 0:
            raise ValueError("token and code lifetimes must be positive")


@dataclass(frozen=True)
class SandboxUser:
    """The Whop user who signs in and consents: the owner of every emulated account."""

    id: str = "user_SandboxOwner01"
    username: str = "sandbox_owner"
    name: str = "Sandbox Owner"
    email: str = "sandbox.owner@example.com"


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``{"error", "error_description"}`` with ``status``."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class RedirectError(OAuthError):
    """An authorization request error reported to the (verified) redirect URI."""


class PageError(OAuthError):
    """An authorization request error shown on a page: the redirect URI is not verified."""


def pkce_challenge(verifier: str) -> str:
    """``base64url(SHA-256(verifier))`` without padding (RFC 7636 §4.2, ``S256``)."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_jwt(claims: Mapping[str, Any], secret: str | None) -> str:
    """A compact JWT: HS256 with ``secret``, else unsigned (``alg: none``)."""
    header = {"alg": "HS256" if secret else "none", "typ": "JWT"}
    signing = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(dict(claims)).encode())
    if not secret:
        return signing + "."
    mac = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + _b64(mac)


__all__ = [
    "CODE_LIFETIME",
    "CONSENT_DECISIONS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_TOKEN_LIFETIME",
    "SCOPE_TOKEN",
    "OAuthConfig",
    "OAuthError",
    "PageError",
    "RedirectError",
    "SandboxUser",
    "make_jwt",
    "pkce_challenge",
]
