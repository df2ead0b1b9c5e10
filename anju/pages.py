"""Server-rendered pages for staff: login, logout, the workspace (工作台) and the knowledge base."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from accounts import service as accounts_service
from accounts.deps import SESSION_COOKIE, same_origin
from accounts.models import ROLE_LABELS, Role, StaffUser, TokenKind
from accounts.views import client_address
from core.deps import RedisDep, SessionDep, SettingsDep
from core.errors import Forbidden, TooManyRequests, Unauthorized
from core.routing import CommittingRoute
from knowledge import views as knowledge_views
from org import service as org_service

router = APIRouter(include_in_schema=False, route_class=CommittingRoute)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
BEIJING = timezone(timedelta(hours=8), "北京时间")  # staff read times in China Standard Time (no DST)


def _local_time(value: datetime | None) -> str:
    return value.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if value else ""


templates.env.filters["local_time"] = _local_time


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send staff to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _page_user(request: Request, session: SessionDep) -> StaffUser | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return accounts_service.user_for_token(session=session, token=token, kind=TokenKind.session)
    except Unauthorized:
        return None


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """Only from our own login page: a form on another site must not log a member of staff into
    the attacker's account (what they then type lands there), nor guess passwords from
    visitors' browsers (each address its own lockout window)."""
    if not same_origin(request):
        raise Forbidden("跨站请求被拒绝")
    try:
        user = accounts_service.authenticate(
            session=session,
            username=username,
            password=password,
            client=client_address(request),
            throttle=accounts_service.LoginThrottle.from_settings(settings, redis),
        )
    except (Unauthorized, TooManyRequests) as exc:
        session.commit()  # keep nothing half-done, but the failure count lives in Redis
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _safe_next(next), "error": exc.message, "username": username},
            status_code=exc.status_code,
        )
    token, _ = accounts_service.issue_token(
        session=session, user=user, kind=TokenKind.session, ttl=timedelta(hours=settings.session_hours)
    )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_hours * 3600,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    """Ends the session, like every cookie write only from our own pages: another site must not
    log staff out (a forged form on evil.example posting here every minute)."""
    if not same_origin(request):
        raise Forbidden("跨站请求被拒绝")
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts_service.revoke_token(session=session, token=token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def workspace(request: Request, session: SessionDep) -> Response:
    user = _page_user(request, session)
    if user is None:
        return RedirectResponse("/login?next=/", status_code=303)
    ids = accounts_service.accessible_community_ids(session=session, user=user)
    communities = org_service.list_communities(session=session, ids=ids)
    counts = {
        c.id: org_service.list_residents(session=session, community_id=c.id, limit=1)[1] for c in communities
    }
    return templates.TemplateResponse(
        request,
        "workspace.html",
        {
            "user": user,
            "role_label": ROLE_LABELS[user.role],
            "communities": communities,
            "counts": counts,
            "is_admin": user.role is Role.admin,
        },
    )


@router.get("/console", response_class=HTMLResponse)
def console_page(request: Request, session: SessionDep) -> Response:
    """The agent console: the live queue, a case with its whole history, replies, notes,
    work orders, call-backs, and the supervisor's view."""
    user = _page_user(request, session)
    if user is None:
        return RedirectResponse("/login?next=/console", status_code=303)
    context: dict[str, object] = {"user": user, "role_label": ROLE_LABELS[user.role]}
    if user.role not in (Role.agent, Role.supervisor, Role.admin):
        return templates.TemplateResponse(
            request,
            "workspace.html",
            {**context, "communities": [], "counts": {}, "is_admin": False, "forbidden": True},
            403,
        )
    context["is_supervisor"] = user.role in (Role.supervisor, Role.admin)
    return templates.TemplateResponse(request, "console.html", context)


@router.get("/opinion", response_class=HTMLResponse)
def opinion_page(request: Request, session: SessionDep) -> Response:
    """The PR risk feed: events live, filters, one event with its posts, chart and workflow."""
    user = _page_user(request, session)
    if user is None:
        target = "/opinion" + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
    context: dict[str, object] = {"user": user, "role_label": ROLE_LABELS[user.role]}
    if user.role not in (Role.pr, Role.supervisor, Role.admin):
        return templates.TemplateResponse(
            request,
            "workspace.html",
            {**context, "communities": [], "counts": {}, "is_admin": False, "forbidden": True},
            403,
        )
    return templates.TemplateResponse(request, "opinion.html", context)


@router.get("/admin/opinion", response_class=HTMLResponse)
def opinion_settings_page(request: Request, session: SessionDep) -> Response:
    """舆情监测设置 (admins): sources with their runs, 试采集 and YAML import; watch terms; alert
    routes with a test message. The page drives the crawl and opinion APIs."""
    user = _page_user(request, session)
    if user is None:
        return RedirectResponse("/login?next=/admin/opinion", status_code=303)
    context: dict[str, object] = {"user": user, "role_label": ROLE_LABELS[user.role]}
    if user.role is not Role.admin:
        return templates.TemplateResponse(request, "opinion_admin.html", {**context, "forbidden": True}, 403)
    ids = accounts_service.accessible_community_ids(session=session, user=user)
    communities = org_service.list_communities(session=session, ids=ids)
    return templates.TemplateResponse(
        request,
        "opinion_admin.html",
        {
            **context,
            "forbidden": False,
            "communities": communities,
            "communities_json": json.dumps(
                [{"id": c.id, "name": c.name} for c in communities], ensure_ascii=False
            ).replace("<", "\\u003c"),
        },
    )


@router.get("/admin/knowledge", response_class=HTMLResponse)
def knowledge_page(request: Request, session: SessionDep) -> Response:
    user = _page_user(request, session)
    if user is None:
        return RedirectResponse("/login?next=/admin/knowledge", status_code=303)
    context: dict[str, object] = {"user": user, "role_label": ROLE_LABELS[user.role]}
    if user.role is not Role.admin:
        return templates.TemplateResponse(request, "knowledge.html", {**context, "forbidden": True}, 403)
    ids = accounts_service.accessible_community_ids(session=session, user=user)
    return templates.TemplateResponse(
        request,
        "knowledge.html",
        {
            **context,
            "forbidden": False,
            "communities": org_service.list_communities(session=session, ids=ids),
            "sources": knowledge_views.source_reads(session=session, user=user),
            "status": knowledge_views.index_status(session=session, company_id=user.company_id),
        },
    )
