"""Twenty's REST error bodies (docs/twenty-api.md#error-bodies) and the one exception every
emulator layer raises.

Twenty's REST exception filter answers ``{statusCode, error, messages: [message]}`` where ``error`` is
the Nest exception's class name: ``BadRequestException`` for validation, upsert conflicts, duplicate
entries and foreign-key violations; ``NotFoundException`` ("Record not found"); ``ForbiddenException``
("Forbidden resource") when the JWT guard refuses the token; and ``HttpException`` for throttling,
because the throttler raises a bare ``HttpException(message, 429)``
(``throttler-to-rest-api-exception-handler.util.ts``).
"""

from __future__ import annotations

import json
import math
from typing import Any

ERROR_NAMES = {
    400: "BadRequestException",
    401: "UnauthorizedException",
    403: "ForbiddenException",
    404: "NotFoundException",
    405: "MethodNotAllowedException",
    409: "ConflictException",
    429: "HttpException",
    500: "InternalServerErrorException",
}


class TwentyError(Exception):
    """An error the emulated server answers with; carries status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message)


def error_body(status: int, message: str) -> dict[str, Any]:
    name = ERROR_NAMES.get(status, "InternalServerErrorException" if status >= 500 else "")
    return {"statusCode": status, "error": name or "BadRequestException", "messages": [message]}


def bad_request(message: str) -> TwentyError:
    return TwentyError(400, message)


def not_found(message: str = "Record not found") -> TwentyError:
    return TwentyError(404, message)


def throttled(message: str, retry_after_seconds: float) -> TwentyError:
    """429 with ``Retry-After`` in whole seconds (never 0: a client sleeping 0 s would spin)."""
    return TwentyError(429, message, {"Retry-After": str(max(1, math.ceil(retry_after_seconds)))})


def js_inspect(value: Any) -> str:
    """Node's ``util.inspect`` rendering, which Twenty embeds in validation messages
    (``Invalid value 'LOST' for field "stage"``)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[ " + ", ".join(js_inspect(item) for item in value) + " ]" if value else "[]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{key}: {js_inspect(item)}" for key, item in value.items()) + " }"
    return json.dumps(value, default=str)
