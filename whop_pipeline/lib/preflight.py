"""The cheap first call every command and run makes to each API, and its failure in one line.

Retries with back-off are right in the middle of a run (a blip should not cost the work done so
far) and wrong before the first byte: a wrong URL, an unknown host, a bad certificate or a refused
key do not heal in three minutes. So the probe tries once (twice on 429/5xx) and says why it failed.
"""

from __future__ import annotations

import ssl
import time

import httpx

PROBE_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class PreflightError(RuntimeError):
    """One line naming what failed and why; ``auth`` when the server refused the credential."""

    def __init__(self, message: str, *, auth: bool = False) -> None:
        super().__init__(message)
        self.auth = auth


def describe_failure(exc: Exception) -> str:
    """The cause of a request that got no response, in words (never the request's headers)."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, httpx.TimeoutException):
        return "no answer within 10 s (timed out)"
    if isinstance(exc.__context__, ssl.SSLError) or "ssl" in lowered or "certificate" in lowered:
        return f"TLS failed ({text or type(exc).__name__})"
    if "refused" in lowered:
        return "connection refused (is the server running on that host and port?)"
    if any(
        hint in lowered
        for hint in (
            "name or service not known",
            "nodename nor servname",
            "getaddrinfo",
            "name resolution",
            "no address associated",
        )
    ):
        return "unknown host (the name does not resolve)"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"not a usable URL ({text})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def probe(
    http: httpx.Client, path: str, *, params: dict[str, str] | None = None, what: str
) -> httpx.Response:
    """GET ``path`` once (once more after a 429/5xx); the response, or ``PreflightError``."""
    for attempt in (1, 2):
        try:
            response = http.get(path, params=params, timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            raise PreflightError(f"{what} is unreachable: {describe_failure(exc)}") from None
        if response.status_code == 429 or response.status_code >= 500:
            if attempt == 1:
                time.sleep(1.0)
                continue
            raise PreflightError(f"{what} answered HTTP {response.status_code} twice")
        return response
    raise AssertionError("unreachable")
