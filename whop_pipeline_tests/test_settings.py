"""Settings: defaults, validation, and errors that name the variable but never echo a secret."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from whop_pipeline.settings import (
    DEFAULT_DB_URL,
    DEFAULT_WHOP_API_BASE_URL,
    ENV_VARS,
    SettingsError,
    load_settings,
)

COMPLETE = {
    "WHOP_API_KEY": "whop-secret-key",
    "WHOP_ACCOUNT_ID": "biz_123",
    "TWENTY_API_URL": "http://localhost:3000/",
    "TWENTY_API_KEY": "twenty-secret-key",
}
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_defaults():
    settings = load_settings(COMPLETE)
    assert settings.db_url == DEFAULT_DB_URL
    assert settings.start_date == dt.date(2025, 1, 1)
    assert settings.connection.name == "default"
    assert settings.connection.whop_api_base_url == DEFAULT_WHOP_API_BASE_URL
    assert settings.connection.twenty_api_url == "http://localhost:3000"
    assert settings.connection.twenty_batch_size == 200
    assert settings.connection.twenty_max_calls_per_minute == 100


@pytest.mark.unit
@pytest.mark.parametrize("missing", ["WHOP_API_KEY", "WHOP_ACCOUNT_ID", "TWENTY_API_URL"])
def test_a_missing_variable_is_named(missing):
    env = {k: v for k, v in COMPLETE.items() if k != missing}
    with pytest.raises(SettingsError, match=f"{missing} is not set"):
        load_settings(env)


@pytest.mark.unit
def test_invalid_values_are_named_without_echoing_secrets():
    env = {**COMPLETE, "TWENTY_BATCH_SIZE": "0", "WHOP_SYNC_START_DATE": "2025-13-01"}
    with pytest.raises(SettingsError) as excinfo:
        load_settings(env)
    assert "WHOP_SYNC_START_DATE" in str(excinfo.value)
    env = {**COMPLETE, "TWENTY_BATCH_SIZE": "0"}
    with pytest.raises(SettingsError) as excinfo:
        load_settings(env)
    assert "TWENTY_BATCH_SIZE is invalid" in str(excinfo.value)
    settings = load_settings(COMPLETE)
    assert "secret-key" not in repr(settings)


@pytest.mark.unit
def test_env_example_and_readme_document_every_variable():
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^([A-Z_]+)=", example, flags=re.M))
    for spec in ENV_VARS:
        assert spec.name in documented, f"{spec.name} missing from .env.example"
        assert f"`{spec.name}`" in readme, f"{spec.name} missing from README's table"
