"""``WhopResource``: the Whop API client as a Dagster resource, for the run's connection."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import Field, PrivateAttr

from whop_pipeline.settings import DEFAULT_CONNECTION, DEFAULT_WHOP_API_BASE_URL, env_setting_name
from whop_pipeline.store import run_connection
from whop_pipeline.whop import tokens
from whop_pipeline.whop.client import PAGE_SIZE, WhopClient
from whop_pipeline.whop.oauth import OAuthSettings


class WhopResource(dg.ConfigurableResource):
    """Read access to one Whop account through API v1.

    The configured key and account are the environment connection's (``connection_name``); a run
    tagged with another connection uses that connection's decrypted credentials from the table.
    The first step of a run to use Whop makes one cheap call and fails in one line when it cannot.
    """

    api_key: str | None = Field(default=None, description="Account API key (WHOP_API_KEY)")
    account_id: str | None = Field(
        default=None, description="Account id, biz_... (WHOP_ACCOUNT_ID)"
    )
    base_url: str = Field(default=DEFAULT_WHOP_API_BASE_URL, description="Includes /api/v1")
    max_requests_per_second: float = Field(default=10.0, gt=0)
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=100, description="Rows per list call")
    db_url: str | None = Field(default=None, description="Pipeline database (connections table)")
    connection_name: str = Field(default=DEFAULT_CONNECTION)
    _connection: str | None = PrivateAttr(default=None)
    _api_key: str | None = PrivateAttr(default=None)
    _account_id: str | None = PrivateAttr(default=None)
    _base_url: str | None = PrivateAttr(default=None)
    _setting: Callable[[str], str] | None = PrivateAttr(default=None)
    _reauthorize: Callable[[], str] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is None:
            return
        name, stored = run_connection.resolve_for_run(context, self.db_url, self.connection_name)
        self._connection = name
        if stored is not None:
            self._api_key = stored.whop_api_key
            self._account_id = stored.whop_account_id
            self._base_url = stored.whop_api_base_url
            self._setting = stored.setting
            if stored.whop_auth == "oauth":
                self._oauth(name)

        def check() -> None:
            with self.client() as client:
                client.check(name)

        run_connection.check_once(context, "whop", self.db_url, name, check)

    def _oauth(self, name: str) -> None:
        """An OAuth connection: a token fresh for the run, and a new one on a 401."""
        engine = run_connection.engine_for(self.db_url)
        settings = OAuthSettings.from_env()

        def token(force: bool = False) -> str:
            try:
                return tokens.access_token(engine, name, settings, force=force)
            except tokens.NeedsReauthorization as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None

        self._api_key = token()
        self._reauthorize = lambda: token(force=True)

    @property
    def connection(self) -> str:
        return self._connection or self.connection_name

    def client(self, on_retry: Callable[[str], None] | None = None) -> WhopClient:
        api_key = self._api_key or self.api_key
        account_id = self._account_id or self.account_id
        if not api_key or not account_id:
            raise dg.Failure(
                description=f"connection {self.connection!r} has no Whop credentials: set "
                "WHOP_API_KEY and WHOP_ACCOUNT_ID, or add it with `whop-pipeline connections add`"
                " (a run or backfill without a whop/connection tag is for the environment "
                "connection: tag it whop/connection=NAME)",
                allow_retries=False,
            )
        return WhopClient(
            base_url=self._base_url or self.base_url,
            api_key=api_key,
            account_id=account_id,
            max_requests_per_second=self.max_requests_per_second,
            on_retry=on_retry,
            page_size=self.page_size,
            setting_name=self._setting or env_setting_name,
            reauthorize=self._reauthorize,
        )
