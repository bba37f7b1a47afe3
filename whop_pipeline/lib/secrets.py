"""Secrets at rest: Fernet tokens (AES-128-CBC + HMAC-SHA256) from the ``cryptography`` package.

Keys come from ``WHOP_PIPELINE_ENCRYPTION_KEYS``: comma-separated Fernet keys, the first encrypts and
every one decrypts (``MultiFernet``), so a key is rotated by putting a new one first, running
``whop-pipeline connections rotate-key``, and then dropping the old one.
https://cryptography.io/en/latest/fernet/#cryptography.fernet.MultiFernet
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEYS_VAR = "WHOP_PIPELINE_ENCRYPTION_KEYS"


class SecretsError(RuntimeError):
    """A key problem, worded for the operator; never carries a secret or a key."""


class SecretBox:
    """Encrypts with the first key, decrypts with any."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SecretsError(
                f"{KEYS_VAR} is not set: it must hold at least one Fernet key "
                "(generate one with `whop-pipeline connections generate-key`)"
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                # The key itself is never echoed; its position is enough to find it.
                raise SecretsError(
                    f"{KEYS_VAR} is invalid: key {position} of {len(keys)} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from None
        self._multi = MultiFernet(fernets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretBox:
        env = os.environ if environ is None else environ
        raw = env.get(KEYS_VAR, "")
        return cls([key.strip() for key in raw.split(",") if key.strip()])

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, *, what: str = "a stored secret") -> str:
        try:
            return self._multi.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretsError(
                f"{what} cannot be decrypted with any key in {KEYS_VAR} "
                "(was the key that encrypted it removed?)"
            ) from None

    def rotate(self, token: str, *, what: str = "a stored secret") -> str:
        """The same secret, encrypted with the first key."""
        try:
            return self._multi.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretsError(
                f"{what} cannot be decrypted with any key in {KEYS_VAR}; nothing was re-encrypted"
            ) from None


def generate_key() -> str:
    return Fernet.generate_key().decode()
