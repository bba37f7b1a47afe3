"""Fixtures of the web app tests."""

from __future__ import annotations

import pytest

from whop_pipeline_tests.web.oauth_stack import serve_stack


@pytest.fixture
def stack(monkeypatch, sqlite_url, encryption_key):
    """The web app next to a sandbox with its OAuth server; ``acme`` waits for Connect Whop."""
    yield from serve_stack(monkeypatch, sqlite_url)
