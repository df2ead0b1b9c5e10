"""Who is calling: a bearer token (API clients) or the session cookie (web pages)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from accounts import service
from accounts.models import Role, StaffUser, TokenKind
from core.deps import SessionDep
from core.errors import Forbidden, Unauthorized

SESSION_COOKIE = "anju_session"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _same_origin(request: Request) -> bool:
    """Cookie-authenticated writes must come from our own pages (with SameSite=Lax, against CSRF)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # not a browser: browsers send Origin on every cross-site POST
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def get_current_user(request: Request, session: SessionDep) -> StaffUser:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization 头应为 Bearer <token>")
        return service.user_for_token(session=session, token=token.strip(), kind=TokenKind.api)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        if request.method not in _SAFE_METHODS and not _same_origin(request):
            raise Forbidden("跨站请求被拒绝")
        return service.user_for_token(session=session, token=cookie, kind=TokenKind.session)
    raise Unauthorized()


CurrentUser = Annotated[StaffUser, Depends(get_current_user)]


def roles(*allowed: Role) -> Callable[[StaffUser], StaffUser]:
    """A dependency that lets only these roles through."""

    def check(user: CurrentUser) -> StaffUser:
        if user.role not in allowed:
            raise Forbidden("您的角色无权执行此操作")
        return user

    return check


AdminUser = Annotated[StaffUser, Depends(roles(Role.admin))]
