"""Who is calling: a bearer token (API clients) or the session cookie (web pages)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from accounts import service
from accounts.models import Role, StaffUser, TokenKind
from core.db import Database
from core.errors import Forbidden, Unauthorized

SESSION_COOKIE = "anju_session"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def same_origin(request: Request) -> bool:
    """Cookie-authenticated writes must come from our own pages (with SameSite=Lax, against CSRF)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # not a browser: browsers send Origin on every cross-site POST
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def get_current_user(request: Request) -> StaffUser:
    """The caller, read in a short session of its own: a view's write transaction starts only
    when the view itself writes, not while the request waits for a thread."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization 头应为 Bearer <token>")
        return _user(request, token.strip(), TokenKind.api)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        if request.method not in _SAFE_METHODS and not same_origin(request):
            raise Forbidden("跨站请求被拒绝")
        return _user(request, cookie, TokenKind.session)
    raise Unauthorized()


def _user(request: Request, token: str, kind: TokenKind) -> StaffUser:
    database: Database = request.app.state.database
    with database.session(readonly=True) as session:
        user = service.user_for_token(session=session, token=token, kind=kind)
        _ = user.scopes  # loaded now: the views read the user's communities after this session
    # The request's database session sees and writes only this user's company and communities
    # (core.tenancy): every id the request carries is looked up within them.
    request.state.tenant_scope = service.scope_for(user)
    return user


CurrentUser = Annotated[StaffUser, Depends(get_current_user)]


def roles(*allowed: Role) -> Callable[[StaffUser], StaffUser]:
    """A dependency that lets only these roles through."""

    def check(user: CurrentUser) -> StaffUser:
        if user.role not in allowed:
            raise Forbidden("您的角色无权执行此操作")
        return user

    return check


AdminUser = Annotated[StaffUser, Depends(roles(Role.admin))]
