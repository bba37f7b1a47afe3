"""``WhopResource``: the Whop API client as a Dagster resource (secrets through ``dg.EnvVar``)."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import Field

from whop_pipeline.settings import DEFAULT_WHOP_API_BASE_URL
from whop_pipeline.whop.client import PAGE_SIZE, WhopClient


class WhopResource(dg.ConfigurableResource):
    """Read access to one Whop account through API v1."""

    api_key: str = Field(description="Account API key (WHOP_API_KEY)")
    account_id: str = Field(description="Account id, biz_... (WHOP_ACCOUNT_ID)")
    base_url: str = Field(default=DEFAULT_WHOP_API_BASE_URL, description="Includes /api/v1")
    max_requests_per_second: float = Field(default=10.0, gt=0)
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=100, description="Rows per list call")

    def client(self, on_retry: Callable[[str], None] | None = None) -> WhopClient:
        return WhopClient(
            base_url=self.base_url,
            api_key=self.api_key,
            account_id=self.account_id,
            max_requests_per_second=self.max_requests_per_second,
            on_retry=on_retry,
            page_size=self.page_size,
        )
