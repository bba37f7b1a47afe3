"""``TwentyResource``: the Twenty client as a Dagster resource, with the workspace's capabilities
discovered (and the schema ensured) once per run."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from whop_pipeline.lib.http import RetryPolicy
from whop_pipeline.settings import DEFAULT_CONNECTION, env_setting_name
from whop_pipeline.store import run_connection
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.loading import TwentyLoad
from whop_pipeline.twenty.models import Capabilities
from whop_pipeline.twenty.schema import SchemaReport, ensure_schema

_capabilities: dict[tuple[str, str], Capabilities] = {}
_lock = threading.Lock()


class TwentyResource(dg.ConfigurableResource):
    """Write access to one Twenty workspace through its REST API.

    The configured URL and key are the environment connection's (``connection_name``); a run
    tagged with another connection uses that connection's workspace and decrypted key from the
    table. The first step of a run to use Twenty makes one cheap call and fails in one line when
    it cannot.
    """

    api_url: str | None = Field(
        default=None, description="Server URL without /rest (TWENTY_API_URL)"
    )
    api_key: str | None = Field(default=None, description="API key (TWENTY_API_KEY)")
    max_calls_per_minute: float = Field(default=100.0, gt=0)
    batch_size: int = Field(default=200, ge=1, le=1000)
    max_attempts: int = Field(
        default=8, ge=1, description="Tries per call on 429, 5xx and connection errors"
    )
    db_url: str | None = Field(default=None, description="Pipeline database (connections table)")
    connection_name: str = Field(default=DEFAULT_CONNECTION)
    _connection: str | None = PrivateAttr(default=None)
    _api_url: str | None = PrivateAttr(default=None)
    _api_key: str | None = PrivateAttr(default=None)
    _setting: Callable[[str], str] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is None:
            return
        name, stored = run_connection.resolve_for_run(context, self.db_url, self.connection_name)
        self._connection = name
        if stored is not None:
            self._api_url = stored.twenty_api_url
            self._api_key = stored.twenty_api_key
            self._setting = stored.setting

        def check() -> None:
            with self.client() as client:
                client.check(name)

        run_connection.check_once(context, "twenty", self.db_url, name, check)

    @property
    def connection(self) -> str:
        return self._connection or self.connection_name

    @property
    def workspace_url(self) -> str:
        return self._api_url or self.api_url or ""

    def client(self, on_retry: Callable[[str], None] | None = None) -> TwentyClient:
        api_key = self._api_key or self.api_key
        if not self.workspace_url or not api_key:
            raise dg.Failure(
                description=f"connection {self.connection!r} has no Twenty workspace: set "
                "TWENTY_API_URL and TWENTY_API_KEY, or add it with `whop-pipeline connections add`"
                " (a run or backfill without a whop/connection tag is for the environment "
                "connection: tag it whop/connection=NAME)",
                allow_retries=False,
            )
        return TwentyClient(
            base_url=self.workspace_url,
            api_key=api_key,
            calls_per_minute=self.max_calls_per_minute,
            retry=RetryPolicy(max_attempts=self.max_attempts, base_delay=1.0),
            on_retry=on_retry,
            setting_name=self._setting or env_setting_name,
        )

    def capabilities(
        self, client: TwentyClient, run_id: str, *, create_missing: bool = True
    ) -> tuple[Capabilities, SchemaReport | None]:
        """The workspace's capabilities, with the pipeline's schema ensured, once per run.

        Returns the report of what was created, or None when this run had already done it.
        """
        key = (run_id, self.connection, self.workspace_url)
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
