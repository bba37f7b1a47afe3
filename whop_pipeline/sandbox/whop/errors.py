"""Whop's error body ``{"error": {"type", "message", "code", "param"}}`` and the exception that
carries it through the emulator.

The SDK documents the shape but not the ``type`` strings. The one enum it types
(``PaymentRequiredErrorBodyErrorType = "payment_required"``) is the snake-cased HTTP reason, so the
emulator uses the same convention for every status: ``bad_request``, ``unauthorized``, ``not_found``,
``too_many_requests``, ``internal_server_error``. ``code`` follows the SDK's examples
(``parameter_missing``, ``parameter_invalid``, ``invalid_json``).
"""

from __future__ import annotations

import math
from typing import Any

ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_server_error",
    503: "service_unavailable",
}


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "type": ERROR_TYPES.get(status, "api_error"),
            "message": message,
            "code": code,
            "param": param,
        }
    }


class WhopApiError(Exception):
    """An error the emulator answers with (HTTP status + Whop error body). Raised by the Python
    control methods too, so tests see the same status and message as over HTTP."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    @property
    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, param=self.param)


def bad_param(param: str, message: str, code: str = "parameter_invalid") -> WhopApiError:
    return WhopApiError(400, message, code=code, param=param)


def not_found(kind: str, ident: str) -> WhopApiError:
    noun = {"memberships": "Membership", "payments": "Payment", "members": "Member"}.get(kind, "")
    noun = noun or {"products": "Product", "plans": "Plan", "variants": "Variant"}.get(
        kind, "Resource"
    )
    return WhopApiError(404, f"{noun} not found: {ident}", code="resource_not_found", param="id")


def fault_body(status: int, retry_after: float = 1.0) -> tuple[dict[str, Any], dict[str, str]]:
    """Error body and headers for an injected fault (``SandboxMiddleware``'s ``error_body``).
    ``Retry-After`` is whole seconds, as HTTP defines it."""
    if status == 429:
        body = error_body(429, "Rate limit exceeded. Retry after the time given in Retry-After.")
        return body, {"Retry-After": str(math.ceil(retry_after))}
    return error_body(status, "An unexpected error occurred. Please try again."), {}
