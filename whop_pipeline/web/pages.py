"""The settings page: ``/`` lists the connections a signed-in principal may see, with Connect Whop,
Sync now and Disconnect on each row.

Server-rendered (Jinja2) and usable without JavaScript. Every form carries the session's CSRF token
(random, compared in constant time): a POST without it, or with another, is a 403 that changes
nothing. Each action answers 303 back to ``/`` (POST-redirect-GET) and leaves a one-time notice in
the session. While a visible sync runs, the page reloads itself every two seconds (``<meta
http-equiv=refresh>``: no script, nothing for the CSP to allow), except while it shows a token that
is shown only once, which a reload would take away.

Routes: ``GET /``, ``POST /sign-in``, ``POST /sign-out``, ``POST /connections/{name}/sync``,
``GET|POST /connections/{name}/disconnect`` (a confirmation page, then the disconnect) and
``/static/`` (the stylesheet).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from whop_pipeline.lib.secrets import SecretBox
from whop_pipeline.store.connections import ConnectionProblem
from whop_pipeline.web import auth, views
from whop_pipeline.web.launcher import RunView, SyncLauncher

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
CSRF_FIELD = "csrf_token"
REFRESH_SECONDS = 2
OUTCOME_GRACE = dt.timedelta(seconds=30)
# The session is a signed cookie (about 4 kB at most): notices are kept short and few.
MAX_NOTICES = 5
MAX_NOTICE_CHARS = 400
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATUS_TEXT = {
    "active": "connected",
    "paused": "connected, paused",
    "needs_reauth": "needs re-authorization",
    "disconnected": "disconnected",
}
OUTCOME_TEXT = {"success": "succeeded", "failure": "failed", "running": "running"}


@dataclass(frozen=True)
class Row:
    """One connection as the table shows it."""

    view: views.ConnectionView
    status_text: str
    syncing: bool
    run: RunView | None
    connect: bool
    sync: bool
    disconnect: bool
    churn_model_text: str = ""

    @property
    def last_sync_text(self) -> str:
        view = self.view
        if view.last_sync_at is None:
            return "never"
        count = view.last_sync_written
        parts = [f"{count} record{'' if count == 1 else 's'} written"]
        if view.last_sync_outcome:
            parts.insert(0, OUTCOME_TEXT.get(view.last_sync_outcome, view.last_sync_outcome))
        return ", ".join(parts)


# --- helpers -------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def checked_form(request: Request) -> FormData | None:
    """The posted form when it carries this session's CSRF token, else None."""
    form = await request.form()
    expected = request.session.get("csrf")
    sent = form.get(CSRF_FIELD)
    if not expected or not isinstance(sent, str):
        return None
    return form if hmac.compare_digest(sent.encode(), expected.encode()) else None


def notify(request: Request, message: str) -> None:
    notices = [*request.session.get("notices", []), message[:MAX_NOTICE_CHARS]]
    request.session["notices"] = notices[-MAX_NOTICES:]


def track(request: Request, name: str, run_id: str) -> None:
    """Remember the run this browser started, so the row shows it before the instance does."""
    request.session["runs"] = {**request.session.get("runs", {}), name: run_id}


def when(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="seconds")


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["iso"] = iso


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    values = {
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "principal": None,
        "notices": [],
        "refresh": 0,
        **(context or {}),
    }
    return TEMPLATES.TemplateResponse(
        request, template, values, status_code=status, headers=SECURITY_HEADERS
    )


def see_other(url: str = "/") -> Response:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def refused(request: Request) -> Response:
    return render(
        request,
        "message.html",
        {
            "title": "Form expired",
            "message": "This form was not sent from the current session (its security token is "
            "missing or stale). Nothing was changed: go back to the settings page and try again.",
        },
        status=403,
    )


def not_found(request: Request, principal: auth.Principal) -> Response:
    # Not allowed and not there get the same answer: a token cannot probe which names exist.
    return render(
        request,
        "message.html",
        {
            "title": "Unknown connection",
            "message": "There is no connection by that name that you may act on.",
            "principal": principal,
        },
        status=404,
    )


def sign_in_page(request: Request, notices: list[str] | None = None, status: int = 200) -> Response:
    return render(request, "sign_in.html", {"notices": notices or []}, status=status)


def _engine(request: Request) -> sa.Engine:
    return request.app.state.engine


def _launcher(request: Request) -> SyncLauncher:
    return request.app.state.launcher


# --- the table -----------------------------------------------------------------------------------


def build_rows(
    engine: sa.Engine,
    launcher: SyncLauncher,
    principal: auth.Principal,
    tracked: Mapping[str, str],
) -> tuple[list[Row], dict[str, str], list[str]]:
    """The visible rows, the runs still worth tracking and notices about tracked runs that
    never started."""
    rows: list[Row] = []
    still_tracked: dict[str, str] = {}
    notices: list[str] = []
    for name in views.visible_names(engine, principal):
        try:
            view = views.connection_view(engine, launcher, principal, name)
        except views.Forbidden:  # removed meanwhile
            continue
        run = view.last_run
        mine = launcher.run(tracked[name], connection=name) if name in tracked else None
        if mine is not None and not mine.finished:
            run = mine
            still_tracked[name] = mine.id
        elif mine is not None and mine.started_at is None and mine.error:
            # Refused before a run existed (a failed check, or a run already in progress): the
            # instance has no record of it, so this is the only place it is reported.
            notices.append(f"The sync of {name} did not start: {mine.error}")
        syncing = in_progress(view, run)
        disconnected = view.status == "disconnected"
        rows.append(
            Row(
                view=view,
                status_text=_status_text(view),
                syncing=syncing,
                run=run,
                # A disconnected connection's Twenty key was erased: Whop consent alone would not
                # make it work again, so it is reconnected from the command line instead.
                connect=not disconnected
                and view.whop_auth != "environment"
                and (not view.is_connected or view.status == "needs_reauth"),
                sync=not disconnected and not syncing,
                disconnect=not disconnected,
                churn_model_text=views.churn_model_text(engine, principal, name),
            )
        )
    return rows, still_tracked, notices


def in_progress(view: views.ConnectionView, run: RunView | None) -> bool:
    if run is not None and not run.finished:
        return True
    # The instance marks a run finished a moment before its outcome is written to the
    # connection: "running" there still counts, for that moment only (a process that died
    # mid-run leaves "running" behind for good, and must not hide Sync now forever).
    return (
        view.last_sync_outcome == "running"
        and run is not None
        and run.finished_at is not None
        and dt.datetime.now(dt.UTC) - run.finished_at < OUTCOME_GRACE
    )


def _status_text(view: views.ConnectionView) -> str:
    if view.status in ("active", "paused") and not view.is_connected:
        return "not connected"
    return STATUS_TEXT.get(view.status, view.status)


# --- routes --------------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    principal = await run_in_threadpool(auth.principal, request, _engine(request))
    session = request.session
    notices: list[str] = list(session.pop("notices", []))
    if principal is None:
        return sign_in_page(request, notices)
    flash = session.pop("flash", None)
    one_time_token = None
    if isinstance(flash, dict) and flash.get("connected"):
        name = str(flash["connected"])
        handle = flash.get("handle")
        notices.insert(0, f"Connected {name} as {handle}." if handle else f"Connected {name}.")
        if flash.get("run_id"):
            track(request, name, str(flash["run_id"]))
        if flash.get("token"):
            token = SecretBox.from_env().decrypt(str(flash["token"]), what="the one-time token")
            one_time_token = {"connection": name, "token": token}
    rows, tracked, run_notices = await run_in_threadpool(
        build_rows, _engine(request), _launcher(request), principal, session.get("runs", {})
    )
    session["runs"] = tracked
    notices += run_notices
    syncing = [row.view.name for row in rows if row.syncing]
    if syncing:
        notices.append(f"Syncing {', '.join(syncing)}…")
    return render(
        request,
        "index.html",
        {
            "principal": principal,
            "rows": rows,
            "notices": notices,
            "one_time_token": one_time_token,
            # A reload would take the one-time token off the screen before it is copied.
            "refresh": REFRESH_SECONDS if syncing and one_time_token is None else 0,
            "now": dt.datetime.now(dt.UTC),
        },
    )


async def sign_in(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return refused(request)
    token = str(form.get("token") or "").strip()
    principal = await run_in_threadpool(auth.principal_for_token, _engine(request), token)
    if principal is None:
        return sign_in_page(request, ["That token was not accepted. Check it and try again."], 401)
    # A fresh session on sign-in: nothing from before (CSRF token, OAuth binding) carries over.
    request.session.clear()
    if principal.admin:
        request.session["admin"] = True
    else:
        request.session["connection"] = principal.connection
    request.session["csrf"] = secrets.token_urlsafe(32)
    notify(request, f"Signed in as {principal.label}.")
    return see_other()


async def sign_out(request: Request) -> Response:
    if await checked_form(request) is None:
        return refused(request)
    request.session.clear()
    request.session["csrf"] = secrets.token_urlsafe(32)
    notify(request, "Signed out.")
    return see_other()


async def sync_now(request: Request) -> Response:
    if await checked_form(request) is None:
        return refused(request)
    engine, launcher = _engine(request), _launcher(request)
    principal = await run_in_threadpool(auth.principal, request, engine)
    if principal is None:
        return sign_in_page(request, ["Sign in first."], 401)
    name = request.path_params["name"]

    def act() -> tuple[str | None, str]:
        view = views.connection_view(engine, launcher, principal, name)
        tracked = request.session.get("runs", {}).get(name)
        mine = launcher.run(tracked, connection=name) if tracked else None
        if any(in_progress(view, r) for r in (view.last_run, mine)):
            return None, f"A sync of {name} is already running."
        # A connection that never synced gets the whole history, later ones the recent days.
        full = view.last_sync_outcome is None
        try:
            run_id = views.trigger_sync(engine, launcher, principal, name, full=full)
        except (ValueError, ConnectionProblem) as exc:
            return None, str(exc)
        return run_id, f"Sync of {name} started{' (full)' if full else ''}."

    try:
        run_id, message = await run_in_threadpool(act)
    except views.Forbidden:
        return not_found(request, principal)
    if run_id:
        track(request, name, run_id)
    notify(request, message)
    return see_other()


async def disconnect(request: Request) -> Response:
    """GET: the confirmation page; POST (with "I understand" ticked): disconnect."""
    engine, launcher = _engine(request), _launcher(request)
    name = request.path_params["name"]
    form = None
    if request.method == "POST":
        form = await checked_form(request)
        if form is None:
            return refused(request)
    principal = await run_in_threadpool(auth.principal, request, engine)
    if principal is None:
        return sign_in_page(request, ["Sign in first."], 401)
    try:
        view = await run_in_threadpool(views.connection_view, engine, launcher, principal, name)
    except views.Forbidden:
        return not_found(request, principal)
    context = {"principal": principal, "view": view}
    if form is None:
        return render(request, "confirm_disconnect.html", context)
    if view.status == "disconnected":
        notify(request, f"{name} is already disconnected.")
        return see_other()
    if form.get("confirm") != "yes":
        notices = ["Tick “I understand” to disconnect; nothing was changed."]
        return render(request, "confirm_disconnect.html", {**context, "notices": notices}, 400)
    try:
        report = await run_in_threadpool(views.disconnect, engine, principal, name)
    except views.Forbidden:
        return not_found(request, principal)
    notify(request, f"Disconnected {name}. Its records stay in Twenty.")
    if report.webhook_note:
        notify(request, report.webhook_note)
    return see_other()


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
        Route("/connections/{name}/sync", sync_now, methods=["POST"]),
        Route("/connections/{name}/disconnect", disconnect, methods=["GET", "POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
