"""Both emulators, started together in-process (tests, demo, benchmarks) or in the foreground
(``whop-pipeline sandbox``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from whop_pipeline.sandbox.common import BackgroundServer
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.sandbox.twenty import TwentyEmulator, create_twenty_app
from whop_pipeline.sandbox.twenty.workspaces import TwentyWorkspaces
from whop_pipeline.sandbox.whop import WhopEmulator, create_whop_app
from whop_pipeline.sandbox.whop.accounts import WhopAccounts
from whop_pipeline.sandbox.whop.clock import SandboxClock
from whop_pipeline.sandbox.whop.oauth import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    DEFAULT_TOKEN_LIFETIME,
    OAuthConfig,
    OAuthServer,
)

DEFAULT_WHOP_KEY = "sandbox-whop-key"
DEFAULT_TWENTY_KEY = "sandbox-twenty-key"
DEFAULT_WEBHOOK_SECRET = "ws_sandbox_webhook_secret"


@dataclass
class SandboxAccount:
    """One Whop account and the Twenty workspace it syncs into (``index`` counts from 1)."""

    index: int
    whop: WhopEmulator
    twenty: TwentyEmulator
    whop_api_key: str
    twenty_api_key: str

    @property
    def account_id(self) -> str:
        return self.whop.account_id

    @property
    def seed(self) -> int:
        return self.whop.dataset.seed

    @property
    def workspace_id(self) -> str:
        return self.twenty.workspace_id

    def configure_webhooks(self, url: str | None, secret: str | None = None) -> None:
        """Deliver this account's webhooks to ``url`` signed with ``secret`` (see
        ``WhopEmulator.configure_webhooks``)."""
        self.whop.configure_webhooks(url, secret)


@dataclass
class Sandbox:
    """The running emulators. ``whop``, ``twenty`` and the keys are account 1's; ``accounts`` holds
    every account, all served by the same two servers (the API key picks the account).
    ``whop_app`` is the Whop server's app (its ``oauth`` is the OAuth server)."""

    whop: WhopEmulator
    twenty: TwentyEmulator
    whop_server: BackgroundServer
    twenty_server: BackgroundServer
    whop_api_key: str
    twenty_api_key: str
    accounts: list[SandboxAccount] = field(default_factory=list)
    whop_app: WhopAccounts | None = None

    def __post_init__(self) -> None:
        if not self.accounts:
            self.accounts = [
                SandboxAccount(1, self.whop, self.twenty, self.whop_api_key, self.twenty_api_key)
            ]

    @property
    def whop_base_url(self) -> str:
        return f"{self.whop_server.url}/api/v1"

    @property
    def twenty_url(self) -> str:
        return self.twenty_server.url

    @property
    def clock(self) -> SandboxClock:
        """The Whop emulator's clock (shared by every account): ``clock.advance(seconds)``."""
        return self.whop.clock

    @property
    def oauth(self) -> OAuthServer:
        """The OAuth server on the Whop host root (``/oauth/authorize``, ``/oauth/token``, ...)."""
        if self.whop_app is None:
            raise RuntimeError("this sandbox was built without its Whop app")
        return self.whop_app.oauth

    @property
    def oauth_authorize_url(self) -> str:
        return f"{self.whop_server.url}/oauth/authorize"

    @property
    def oauth_token_url(self) -> str:
        return f"{self.whop_server.url}/oauth/token"

    def account(self, index: int) -> SandboxAccount:
        """Account ``index``, counting from 1."""
        if not 1 <= index <= len(self.accounts):
            raise IndexError(f"account {index} out of 1..{len(self.accounts)}")
        return self.accounts[index - 1]

    def env(self, account: int = 1, **overrides: str) -> dict[str, str]:
        """The pipeline's environment variables for account ``account`` of this sandbox."""
        chosen = self.account(account)
        values = {
            "WHOP_API_KEY": chosen.whop_api_key,
            "WHOP_ACCOUNT_ID": chosen.account_id,
            "WHOP_API_BASE_URL": self.whop_base_url,
            "TWENTY_API_URL": self.twenty_url,
            "TWENTY_API_KEY": chosen.twenty_api_key,
        }
        if chosen.whop.webhook_secret:
            values["WHOP_WEBHOOK_SECRET"] = chosen.whop.webhook_secret
        values.update(overrides)
        return values

    def stop(self) -> None:
        self.whop_server.stop()
        self.twenty_server.stop()
        for chosen in self.accounts:
            chosen.whop.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def account_key(base: str, index: int) -> str:
    """Account 1 keeps ``base``; account i >= 2 uses ``f"{base}-{i}"``."""
    return base if index == 1 else f"{base}-{index}"


def check_accounts(accounts: object) -> int:
    """``accounts`` if it is a positive integer, else ``ValueError``."""
    if isinstance(accounts, bool) or not isinstance(accounts, int) or accounts < 1:
        raise ValueError(f"accounts must be a positive integer, not {accounts!r}")
    return accounts


def start_sandbox(
    dataset: str = "tiny",
    *,
    seed: int = 0,
    scale: int = 1,
    churn: str = "learnable",
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
    accounts: int = 1,
    oauth_client_id: str = DEFAULT_CLIENT_ID,
    oauth_client_secret: str | None = DEFAULT_CLIENT_SECRET,
    oauth_redirect_uri: str = DEFAULT_REDIRECT_URI,
    oauth_token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
) -> Sandbox:
    """Generate the dataset, start both emulators on 127.0.0.1 (port 0 = a free one).

    ``dataset`` is the preset (tiny, small, large); ``scale`` multiplies its members, memberships
    and payments (products and plans stay); ``churn`` ("learnable" or "random") picks how
    memberships end; see ``generate_dataset``.

    ``accounts`` > 1 serves that many Whop accounts and Twenty workspaces on the same two ports:
    account i uses dataset seed ``seed + i - 1`` and the keys ``f"{key}-{i}"`` (account 1 keeps
    the keys as given). The webhook target configures account 1; configure the others with
    ``sandbox.account(i).configure_webhooks(url, secret)``.

    The Whop server also runs an OAuth 2.1 server for one registered app (``oauth_client_id``,
    ``oauth_client_secret``, its one ``oauth_redirect_uri``; ``oauth_client_secret=None`` makes it a
    public client), whose access tokens last ``oauth_token_lifetime`` seconds; see
    ``whop_pipeline/sandbox/whop/oauth.py``. Every account shares one clock (``sandbox.clock``)."""
    count = check_accounts(accounts)
    oauth = OAuthConfig(
        client_id=oauth_client_id,
        client_secret=oauth_client_secret,
        redirect_uri=oauth_redirect_uri,
        token_lifetime=oauth_token_lifetime,
    )
    clock = SandboxClock()
    built: list[SandboxAccount] = []
    try:
        for index in range(1, count + 1):
            first = index == 1
            data = generate_dataset(
                dataset,  # type: ignore[arg-type]
                seed=seed + index - 1,
                start_date=start_date,
                now=now,
                scale=scale,
                churn=churn,  # type: ignore[arg-type]
            )
            # Each account draws its own faults, account 1 exactly as a single account would.
            account_fault_seed = None if fault_seed is None else fault_seed + index - 1
            whop = create_whop_app(
                data,
                api_key=account_key(whop_api_key, index),
                latency_ms=latency_ms,
                fault_rate=fault_rate if whop_fault_rate is None else whop_fault_rate,
                fault_seed=account_fault_seed,
                webhook_url=webhook_url if first else None,
                webhook_secret=webhook_secret if first else None,
                webhook_retry_delays=webhook_retry_delays,
                retry_after_seconds=retry_after_seconds,
                clock=clock,
            )
            twenty = create_twenty_app(
                api_key=account_key(twenty_api_key, index),
                rate_limit_per_minute=twenty_rate_limit,
                max_batch=twenty_max_batch,
                note_target_style=note_target_style,  # type: ignore[arg-type]
                latency_ms=latency_ms,
                fault_rate=fault_rate if twenty_fault_rate is None else twenty_fault_rate,
                fault_seed=account_fault_seed,
            )
            built.append(SandboxAccount(index, whop, twenty, whop.api_key, twenty.api_key))
        # Account ids come from the seeds; two seeds drawing the same id would merge accounts.
        if len({a.account_id for a in built}) != count:
            raise ValueError("two accounts drew the same account id; pick another seed")
        whop_app = WhopAccounts([a.whop for a in built], oauth=oauth)
        twenty_app = TwentyWorkspaces([a.twenty for a in built])
    except Exception:
        for made in built:
            made.whop.close()
        raise
    whop_server = BackgroundServer(whop_app, port=whop_port).start()
    try:
        twenty_server = BackgroundServer(twenty_app, port=twenty_port).start()
    except Exception:
        whop_server.stop()
        for made in built:
            made.whop.close()
        raise
    one = built[0]
    return Sandbox(
        one.whop,
        one.twenty,
        whop_server,
        twenty_server,
        one.whop_api_key,
        one.twenty_api_key,
        built,
        whop_app,
    )


def describe(sandbox: Sandbox, dataset: str) -> str:
    counts: dict[str, Any] = sandbox.whop.dataset.counts()
    scale = sandbox.whop.dataset.scale
    label = dataset if scale == 1 else f"{dataset} (scale {scale})"
    several = len(sandbox.accounts) > 1
    lines = [
        f"Whop API v1 emulator   {sandbox.whop_base_url}   key {sandbox.whop_api_key}",
        f"Twenty emulator        {sandbox.twenty_url}   key {sandbox.twenty_api_key}",
        f"dataset {label}: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
    ]
    if several:
        lines[-1] = f"dataset {label}, per account: " + ", ".join(
            f"{v} {k}" for k, v in counts.items()
        )
        lines += ["", f"{len(sandbox.accounts)} accounts (same ports, the key picks the account):"]
        lines += [
            f"  account {a.index}: {a.account_id}  seed {a.seed}  whop key {a.whop_api_key}  "
            f"twenty key {a.twenty_api_key}  workspace {a.workspace_id}"
            for a in sandbox.accounts
        ]
    lines += [
        "",
        "# point the pipeline at them" + (" (account 1):" if several else ":"),
        *(f"export {name}={value}" for name, value in sandbox.env().items()),
        "",
        "Control: GET /_sandbox/stats, POST /_sandbox/reset[?data=true] on both; "
        "POST /_sandbox/{memberships,payments}[/{id}], POST /_sandbox/members/{id} on Whop; "
        "GET /_sandbox/dump on both. Ctrl-C stops.",
    ]
    if several:
        lines.append(
            "Accounts: GET /_sandbox/accounts on Whop, GET /_sandbox/workspaces on Twenty; "
            "address one with ?account=biz_... (Whop) or ?workspace=<id> (Twenty)."
        )
    if sandbox.whop_app is not None:
        config, url = sandbox.oauth.config, sandbox.whop_server.url
        secret = config.client_secret or "(none: public client)"
        lines += [
            "",
            f"OAuth app {config.client_id}  secret {secret}  redirect URI {config.redirect_uri}",
            f"  authorize {url}/oauth/authorize   token {url}/oauth/token   "
            f"userinfo {url}/oauth/userinfo   access tokens last {config.token_lifetime} s",
            "  control: POST /_sandbox/oauth/{consent,revoke,expire}, POST /_sandbox/clock; "
            "webhooks: /api/v1/webhooks",
        ]
    return "\n".join(lines)
