"""Whop API v1 emulator: ``create_whop_app(dataset, api_key=...)`` → ``WhopEmulator``.

Names resolve lazily so that ``whop_pipeline.sandbox.dataset`` can import the generator modules of
this package without importing the app (which imports the dataset module back).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whop_pipeline.sandbox.whop.app import WhopEmulator, create_whop_app, serve_whop
    from whop_pipeline.sandbox.whop.errors import WhopApiError
    from whop_pipeline.sandbox.whop.render import render

_EXPORTS = {
    "WhopEmulator": "whop_pipeline.sandbox.whop.app",
    "create_whop_app": "whop_pipeline.sandbox.whop.app",
    "serve_whop": "whop_pipeline.sandbox.whop.app",
    "WhopApiError": "whop_pipeline.sandbox.whop.errors",
    "render": "whop_pipeline.sandbox.whop.render",
}

__all__ = ["WhopApiError", "WhopEmulator", "create_whop_app", "render", "serve_whop"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
