"""``TwentyResource``: the Twenty client as a Dagster resource, with the workspace's capabilities
discovered (and the schema ensured) once per run."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from whop_pipeline.lib.http import RetryPolicy
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.loading import TwentyLoad
from whop_pipeline.twenty.models import Capabilities
from whop_pipeline.twenty.schema import SchemaReport, ensure_schema

_capabilities: dict[tuple[str, str], Capabilities] = {}
_lock = threading.Lock()


class TwentyResource(dg.ConfigurableResource):
    """Write access to one Twenty workspace through its REST API."""

    api_url: str = Field(description="Server base URL without /rest (TWENTY_API_URL)")
    api_key: str = Field(description="API key (TWENTY_API_KEY)")
    max_calls_per_minute: float = Field(default=100.0, gt=0)
    batch_size: int = Field(default=200, ge=1, le=1000)
    max_attempts: int = Field(
        default=8, ge=1, description="Tries per call on 429, 5xx and connection errors"
    )

    def client(self, on_retry: Callable[[str], None] | None = None) -> TwentyClient:
        return TwentyClient(
            base_url=self.api_url,
            api_key=self.api_key,
            calls_per_minute=self.max_calls_per_minute,
            retry=RetryPolicy(max_attempts=self.max_attempts, base_delay=1.0),
            on_retry=on_retry,
        )

    def capabilities(
        self, client: TwentyClient, run_id: str, *, create_missing: bool = True
    ) -> tuple[Capabilities, SchemaReport | None]:
        """The workspace's capabilities, with the pipeline's schema ensured, once per run.

        Returns the report of what was created, or None when this run had already done it.
        """
        key = (run_id, self.api_url)
        with _lock:
            cached = _capabilities.get(key)
        if cached is not None:
            return cached, None
        if create_missing:
            caps, report = ensure_schema(client)
        else:
            caps, report = Capabilities(objects=client.objects()), SchemaReport()
        with _lock:
            _capabilities[key] = caps
        return caps, report

    @contextlib.contextmanager
    def load_session(
        self,
        *,
        run_id: str,
        engine: sa.Engine,
        connection: str,
        log: Callable[[str], None],
        on_retry: Callable[[str], None] | None = None,
        dry_run: bool = False,
    ) -> Iterator[TwentyLoad]:
        """A ``TwentyLoad`` on a fresh client (closed on exit), with the run's capabilities; a dry
        run creates no schema."""
        with self.client(on_retry=on_retry or log) as client:
            caps, _ = self.capabilities(client, run_id, create_missing=not dry_run)
            yield TwentyLoad(
                client,
                caps,
                engine,
                connection=connection,
                batch_size=self.batch_size,
                dry_run=dry_run,
                log=log,
            )
