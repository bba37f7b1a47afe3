"""``/graphql``: the connections API, with the operation and field names of the product it replaces.

Queries ``whopConnectionStatus``, ``whopConnections``, ``whopSyncRun`` and
``whopCustomerHealth`` (this project's own: the models and the customers at risk); mutations
``triggerWhopSync`` and ``disconnectWhopAccount``. Every one goes through ``web.views`` (the same
checks as the settings page): a connection's token acts on that connection alone, and naming
another, or one that does not exist, gets the same "not allowed" error before anything is read.

A request proves who it is with ``Authorization: Bearer <token>`` or the settings page's session
cookie. Without either (or with a token that is not valid) no operation runs: the answer is HTTP
401 with one GraphQL error saying ``unauthorized``. GET without a query serves the GraphiQL IDE.

Resolvers are coroutines that hand database, HTTP and Dagster work to the thread pool, so the event
loop keeps answering webhooks while a sync is started, waited for or read back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import strawberry
from graphql import GraphQLError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from strawberry.asgi import GraphQL
from strawberry.extensions import MaskErrors
from strawberry.scalars import JSON
from strawberry.types import ExecutionContext, ExecutionResult, Info

from whop_pipeline.web import auth, views
from whop_pipeline.web.graphql_health import WhopCustomerHealth, health_answer
from whop_pipeline.web.launcher import SYNC_COUNTS, RunView, SyncLauncher

T = TypeVar("T")
PATH = "/graphql"
UNAUTHORIZED_MISSING = (
    "unauthorized: send Authorization: Bearer <token> (the admin token or a connection's API "
    "token), or sign in on the settings page"
)
UNAUTHORIZED_INVALID = "unauthorized: the token is not valid"


class ApiError(GraphQLError):
    """An error the caller caused (or may see), answered as a GraphQL error with ``code``;
    anything else is a bug and is logged with its traceback."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, extensions={"code": code})


@dataclass
class Context:
    request: HTTPConnection
    response: Response | Any
    engine: sa.Engine
    launcher: SyncLauncher
    principal: auth.Principal | None
    token_sent: bool


def _context(info: Info) -> Context:
    return info.context


def _principal(info: Info) -> auth.Principal:
    context = _context(info)
    if context.principal is None:  # the view answers before any resolver; kept as a backstop
        raise ApiError(
            UNAUTHORIZED_INVALID if context.token_sent else UNAUTHORIZED_MISSING, "UNAUTHENTICATED"
        )
    return context.principal


def _target(info: Info, connection: str | None) -> str:
    """The connection an operation is about: the one named, else the token's own."""
    principal = _principal(info)
    if connection:
        return connection
    if principal.connection:
        return principal.connection
    raise ApiError("connection is required with the admin token", "BAD_USER_INPUT")


async def _in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function`` on the thread pool; a refusal of ``views`` becomes a FORBIDDEN error."""
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except views.Forbidden as exc:
        raise ApiError(str(exc), "FORBIDDEN") from exc


# --- types ------------------------------------------------------------------------------------


@strawberry.type(description="One sync run of a connection, as the Dagster instance records it.")
class WhopSyncRun:
    id: str
    connection: str
    status: str = strawberry.field(
        description="The Dagster run status (QUEUED, STARTING, STARTED, SUCCESS, FAILURE, ...)."
    )
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    counts: JSON = strawberry.field(
        description="Per Twenty asset: created, updated, unchanged and rejected records."
    )
    products_sync: int | None = strawberry.field(
        description="Products written (created + updated); null until the run has finished."
    )
    users_sync: int | None = strawberry.field(
        description="People written (created + updated); null until the run has finished."
    )
    memberships_sync: int | None = strawberry.field(
        description="Opportunities written (created + updated); null until the run has finished."
    )
    errors: list[str]


@strawberry.type(description="A connection: one Whop account synced into one Twenty workspace.")
class WhopConnectionStatus:
    name: str
    status: str = strawberry.field(
        description="active, paused, needs_reauth or disconnected (stored credentials erased)."
    )
    is_connected: bool
    handle: str | None = strawberry.field(description="The Whop account's handle, once known.")
    whop_account_id: str
    whop_auth: str = strawberry.field(description="api_key, oauth or environment.")
    twenty_url: str
    has_webhook: bool
    last_sync_at: dt.datetime | None
    last_sync_outcome: str | None
    last_error: str | None
    last_run: WhopSyncRun | None


@strawberry.type(description="What triggerWhopSync did.")
class WhopSyncResult:
    success: bool = strawberry.field(
        description="The sync was started and has not failed (once finished: it succeeded)."
    )
    run_id: str | None
    status: str | None
    products_sync: int | None
    users_sync: int | None
    memberships_sync: int | None
    errors: list[str]


def _written(run: RunView) -> dict[str, int | None]:
    """The counts by their GraphQL names: each read from the finished run, null before (or for
    an asset the run did not materialize)."""
    return {
        field: run.written(asset) if run.finished and asset in run.counts else None
        for field, asset in (
            ("products_sync", SYNC_COUNTS["productsSync"]),
            ("users_sync", SYNC_COUNTS["usersSync"]),
            ("memberships_sync", SYNC_COUNTS["membershipsSync"]),
        )
    }


def _errors(run: RunView) -> list[str]:
    if run.status in ("FAILURE", "CANCELED"):
        return [run.error or f"the run ended {run.status}"]
    return []


def _run(run: RunView) -> WhopSyncRun:
    return WhopSyncRun(
        id=run.id,
        connection=run.connection,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        counts=run.counts,
        errors=_errors(run),
        **_written(run),
    )


def _status(view: views.ConnectionView) -> WhopConnectionStatus:
    return WhopConnectionStatus(
        name=view.name,
        status=view.status,
        is_connected=view.is_connected,
        handle=view.handle,
        whop_account_id=view.whop_account_id,
        whop_auth=view.whop_auth,
        twenty_url=view.twenty_url,
        has_webhook=view.has_webhook,
        last_sync_at=view.last_sync_at,
        last_sync_outcome=view.last_sync_outcome,
        last_error=view.last_error,
        last_run=_run(view.last_run) if view.last_run else None,
    )


def _statuses(
    engine: sa.Engine, launcher: SyncLauncher, principal: auth.Principal
) -> list[views.ConnectionView]:
    return [
        views.connection_view(engine, launcher, principal, name)
        for name in views.visible_names(engine, principal)
    ]


# --- operations -------------------------------------------------------------------------------

ConnectionArg = Annotated[
    str | None,
    strawberry.argument(
        description="The connection's name; defaults to the token's own (required for admin)."
    ),
]


@strawberry.type
class Query:
    @strawberry.field(description="The status of one connection and its latest sync run.")
    async def whop_connection_status(
        self, info: Info, connection: ConnectionArg = None
    ) -> WhopConnectionStatus:
        name, context = _target(info, connection), _context(info)
        view = await _in_thread(
            views.connection_view, context.engine, context.launcher, context.principal, name
        )
        return _status(view)

    @strawberry.field(description="Every connection for the admin token; a connection's own.")
    async def whop_connections(self, info: Info) -> list[WhopConnectionStatus]:
        principal, context = _principal(info), _context(info)
        found = await _in_thread(_statuses, context.engine, context.launcher, principal)
        return [_status(view) for view in found]

    @strawberry.field(description="One sync run of the connection, by the id triggerWhopSync gave.")
    async def whop_sync_run(
        self,
        info: Info,
        connection: ConnectionArg = None,
        *,
        run_id: Annotated[str, strawberry.argument(name="id")],
    ) -> WhopSyncRun:
        name, context = _target(info, connection), _context(info)
        run = await _in_thread(views.run_view, context.launcher, context.principal, name, run_id)
        return _run(run)

    @strawberry.field(
        description="The connection's churn and lead models and its customers at risk."
    )
    async def whop_customer_health(
        self,
        info: Info,
        connection: ConnectionArg = None,
        min_churn_risk: int = 50,
        limit: int = 20,
    ) -> WhopCustomerHealth:
        if not 0 <= min_churn_risk <= 100 or not 1 <= limit <= 500:
            raise ApiError("minChurnRisk must be 0–100 and limit 1–500", "BAD_USER_INPUT")
        name, context = _target(info, connection), _context(info)
        view = await _in_thread(
            views.customer_health,
            context.engine,
            context.principal,
            name,
            min_churn_risk=min_churn_risk,
            limit=limit,
        )
        return health_answer(view)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Start a sync of the connection (full: every partition). Answers at once with "
        "the run id, or with wait: true once the run has finished, with its counts."
    )
    async def trigger_whop_sync(
        self,
        info: Info,
        connection: ConnectionArg = None,
        full: bool | None = False,
        wait: bool | None = False,
    ) -> WhopSyncResult:
        name, context = _target(info, connection), _context(info)
        try:
            run_id = await _in_thread(
                views.trigger_sync,
                context.engine,
                context.launcher,
                context.principal,
                name,
                full=bool(full),
            )
        except ValueError as exc:  # disconnected, or waiting for its Whop authorization
            return WhopSyncResult(
                success=False,
                run_id=None,
                status=None,
                products_sync=None,
                users_sync=None,
                memberships_sync=None,
                errors=[str(exc)],
            )
        if wait:
            await run_in_threadpool(context.launcher.wait, run_id)
        run = await _in_thread(views.run_view, context.launcher, context.principal, name, run_id)
        errors = _errors(run)
        return WhopSyncResult(
            success=not errors, run_id=run_id, status=run.status, errors=errors, **_written(run)
        )

    @strawberry.mutation(
        description="Disconnect the connection as `whop-pipeline connections disconnect` does: "
        "delete the Whop webhook the pipeline registered, erase the stored credentials and stop "
        "its syncs. Records in Twenty are kept."
    )
    async def disconnect_whop_account(self, info: Info, connection: ConnectionArg = None) -> bool:
        name, context = _target(info, connection), _context(info)
        await _in_thread(views.disconnect, context.engine, context.principal, name)
        return True


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Refusals and bad input are answers, not incidents: only unexpected errors are logged.
        unexpected = [e for e in errors if not isinstance(e.original_error, ApiError)]
        super().process_errors(unexpected, execution_context)


def _unexpected(error: GraphQLError) -> bool:
    """A resolver's own exception that is not an answer meant for the caller: a bug or an outage
    whose message may name internals (SQL, hosts), so the caller gets "Unexpected error." while
    the log keeps the original."""
    original = error.original_error
    return isinstance(original, Exception) and not isinstance(original, GraphQLError)


schema = _Schema(query=Query, mutation=Mutation, extensions=[lambda: MaskErrors(_unexpected)])


class _GraphQLApp(GraphQL):
    async def get_context(self, request: HTTPConnection, response: Any) -> Context:
        state = request.app.state
        principal = await run_in_threadpool(auth.principal, request, state.engine)  # type: ignore[arg-type]
        if principal is None and isinstance(response, Response):
            response.status_code = 401
            response.headers["WWW-Authenticate"] = "Bearer"
        return Context(
            request=request,
            response=response,
            engine=state.engine,
            launcher=state.launcher,
            principal=principal,
            token_sent=auth.bearer(request) is not None,  # type: ignore[arg-type]
        )

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        context: Context = kwargs["context"]
        if context.principal is None:
            # Nothing runs for an unknown caller, not even introspection.
            message = UNAUTHORIZED_INVALID if context.token_sent else UNAUTHORIZED_MISSING
            return ExecutionResult(
                data=None, errors=[GraphQLError(message, extensions={"code": "UNAUTHENTICATED"})]
            )
        return await super().execute_single(*args, **kwargs)


def routes() -> list[BaseRoute]:
    """``/graphql``: POST (and GET) queries; GET without a query serves the GraphiQL IDE."""
    app = _GraphQLApp(schema, graphql_ide="graphiql", subscription_protocols=())
    return [Route(PATH, app)]
