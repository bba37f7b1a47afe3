"""Both emulators, started together in-process (tests, demo, benchmarks) or in the foreground
(``whop-pipeline sandbox``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.sandbox.twenty import TwentyEmulator, create_twenty_app
from whop_pipeline.sandbox.whop import WhopEmulator, create_whop_app

DEFAULT_WHOP_KEY = "sandbox-whop-key"
DEFAULT_TWENTY_KEY = "sandbox-twenty-key"
DEFAULT_WEBHOOK_SECRET = "ws_sandbox_webhook_secret"


@dataclass
class Sandbox:
    whop: WhopEmulator
    twenty: TwentyEmulator
    whop_server: BackgroundServer
    twenty_server: BackgroundServer
    whop_api_key: str
    twenty_api_key: str

    @property
    def whop_base_url(self) -> str:
        return f"{self.whop_server.url}/api/v1"

    @property
    def twenty_url(self) -> str:
        return self.twenty_server.url

    def env(self, **overrides: str) -> dict[str, str]:
        """The pipeline's environment variables for this sandbox."""
        values = {
            "WHOP_API_KEY": self.whop_api_key,
            "WHOP_ACCOUNT_ID": self.whop.account_id,
            "WHOP_API_BASE_URL": self.whop_base_url,
            "TWENTY_API_URL": self.twenty_url,
            "TWENTY_API_KEY": self.twenty_api_key,
        }
        if self.whop.webhook_secret:
            values["WHOP_WEBHOOK_SECRET"] = self.whop.webhook_secret
        values.update(overrides)
        return values

    def stop(self) -> None:
        self.whop_server.stop()
        self.twenty_server.stop()
        self.whop.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    dataset: str = "tiny",
    *,
    seed: int = 0,
    scale: int = 1,
    now: dt.datetime | None = None,
    start_date: dt.date = dt.date(2025, 1, 1),
    whop_port: int = 0,
    twenty_port: int = 0,
    whop_api_key: str = DEFAULT_WHOP_KEY,
    twenty_api_key: str = DEFAULT_TWENTY_KEY,
    twenty_rate_limit: float = 100.0,
    twenty_max_batch: int = 200,
    note_target_style: str = "current",
    latency_ms: float = 0.0,
    fault_rate: float = 0.0,
    fault_seed: int | None = None,
    whop_fault_rate: float | None = None,
    twenty_fault_rate: float | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    webhook_retry_delays: tuple[float, ...] = (10.0, 20.0, 40.0),
    retry_after_seconds: float = 1.0,
) -> Sandbox:
    """Generate the dataset, start both emulators on 127.0.0.1 (port 0 = a free one).

    ``dataset`` is the preset (tiny, small, large); ``scale`` multiplies its members, memberships
    and payments (products and plans stay), see ``generate_dataset``."""
    data = generate_dataset(
        dataset,  # type: ignore[arg-type]
        seed=seed,
        start_date=start_date,
        now=now,
        scale=scale,
    )
    whop = create_whop_app(
        data,
        api_key=whop_api_key,
        latency_ms=latency_ms,
        fault_rate=fault_rate if whop_fault_rate is None else whop_fault_rate,
        fault_seed=fault_seed,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_retry_delays=webhook_retry_delays,
        retry_after_seconds=retry_after_seconds,
    )
    twenty = create_twenty_app(
        api_key=twenty_api_key,
        rate_limit_per_minute=twenty_rate_limit,
        max_batch=twenty_max_batch,
        note_target_style=note_target_style,  # type: ignore[arg-type]
        latency_ms=latency_ms,
        fault_rate=fault_rate if twenty_fault_rate is None else twenty_fault_rate,
        fault_seed=fault_seed,
    )
    whop_server = BackgroundServer(whop.app, port=whop_port).start()
    try:
        twenty_server = BackgroundServer(twenty.app, port=twenty_port).start()
    except Exception:
        whop_server.stop()
        whop.close()
        raise
    return Sandbox(whop, twenty, whop_server, twenty_server, whop_api_key, twenty_api_key)


def describe(sandbox: Sandbox, dataset: str) -> str:
    counts: dict[str, Any] = sandbox.whop.dataset.counts()
    scale = sandbox.whop.dataset.scale
    label = dataset if scale == 1 else f"{dataset} (scale {scale})"
    lines = [
        f"Whop API v1 emulator   {sandbox.whop_base_url}   key {sandbox.whop_api_key}",
        f"Twenty emulator        {sandbox.twenty_url}   key {sandbox.twenty_api_key}",
        f"dataset {label}: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
        "",
        "# point the pipeline at them:",
        *(f"export {name}={value}" for name, value in sandbox.env().items()),
        "",
        "Control: GET /_sandbox/stats, POST /_sandbox/reset[?data=true] on both; "
        "POST /_sandbox/{memberships,payments}[/{id}], POST /_sandbox/members/{id} on Whop; "
        "GET /_sandbox/dump on both. Ctrl-C stops.",
    ]
    return "\n".join(lines)
