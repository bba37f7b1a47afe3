"""Test helpers: a sandbox on the test partitions and the pipeline's real resources pointed at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import httpx
import sqlalchemy as sa

from whop_pipeline.orchestration.partitions import daily_partitions
from whop_pipeline.orchestration.tags import range_tags
from whop_pipeline.sandbox.runner import Sandbox, start_sandbox
from whop_pipeline.settings import start_date_from_env
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.twenty.resource import TwentyResource
from whop_pipeline.whop.resource import WhopResource

FAST = 100_000  # rate limits high enough never to slow a test down


def dataset_now() -> dt.datetime:
    """The dataset's "now": the start of the current hour (inside today's partition)."""
    return dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)


def start_test_sandbox(**options: Any) -> Sandbox:
    defaults: dict[str, Any] = {
        "start_date": start_date_from_env(),
        "now": dataset_now(),
        "twenty_rate_limit": FAST,
        "retry_after_seconds": 0.05,
        "webhook_retry_delays": (0.2, 0.4, 0.8),
    }
    return start_sandbox("tiny", **{**defaults, **options})


def all_partitions() -> tuple[str, str]:
    keys = daily_partitions.get_partition_keys()
    return keys[0], keys[-1]


@dataclass
class Pipeline:
    sandbox: Sandbox
    db_url: str
    connection: str = "default"

    def whop(self, **config: Any) -> WhopResource:
        defaults = {
            "api_key": self.sandbox.whop_api_key,
            "account_id": self.sandbox.whop.account_id,
            "base_url": self.sandbox.whop_base_url,
            "max_requests_per_second": FAST,
        }
        return WhopResource(**{**defaults, **config})

    def twenty(self, **config: Any) -> TwentyResource:
        defaults = {
            "api_url": self.sandbox.twenty_url,
            "api_key": self.sandbox.twenty_api_key,
            "max_calls_per_minute": FAST,
        }
        return TwentyResource(**{**defaults, **config})

    def resources(self, **overrides: Any) -> dict[str, Any]:
        resources: dict[str, Any] = {
            "pipeline_db": PipelineDatabase(url=self.db_url, connection_name=self.connection),
            "whop": self.whop(),
            "twenty": self.twenty(),
        }
        resources.update(overrides)
        return resources

    def env(self) -> dict[str, str]:
        return self.sandbox.env(
            WHOP_PIPELINE_DB_URL=self.db_url,
            TWENTY_MAX_CALLS_PER_MINUTE=str(FAST),
            WHOP_MAX_REQUESTS_PER_SECOND=str(FAST),
        )

    @property
    def engine(self) -> sa.Engine:
        return get_engine(self.db_url)

    def materialize(
        self,
        assets: Sequence[Any],
        *,
        partitions: tuple[str, str] | None = None,
        partition_key: str | None = None,
        selection: Sequence[Any] | None = None,
        instance: dg.DagsterInstance | None = None,
        raise_on_error: bool = True,
        tags: dict[str, str] | None = None,
        **resource_overrides: Any,
    ) -> dg.ExecuteInProcessResult:
        tags = {**(range_tags(*partitions) if partitions else {}), **(tags or {})} or None
        run = lambda inst: dg.materialize(  # noqa: E731
            assets,
            instance=inst,
            resources=self.resources(**resource_overrides),
            tags=tags,
            partition_key=partition_key,
            selection=selection,
            raise_on_error=raise_on_error,
        )
        if instance is not None:
            return run(instance)
        with dg.instance_for_test() as temporary:
            return run(temporary)

    # --- the emulators' control endpoints ----------------------------------------------------

    def whop_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.sandbox.whop_server.url}/_sandbox/stats").json()

    def twenty_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.sandbox.twenty_url}/_sandbox/stats").json()

    def reset_stats(self) -> None:
        httpx.post(f"{self.sandbox.whop_server.url}/_sandbox/reset")
        httpx.post(f"{self.sandbox.twenty_url}/_sandbox/reset")

    def twenty_dump(self) -> dict[str, list[dict[str, Any]]]:
        return httpx.get(f"{self.sandbox.twenty_url}/_sandbox/dump", timeout=60).json()


def set_env(monkeypatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
