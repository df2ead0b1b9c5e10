"""API: tokens for API clients, the caller's own account, staff accounts (admins)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from accounts import service
from accounts.deps import AdminUser, CurrentUser
from accounts.models import StaffUser, TokenKind
from accounts.schemas import TokenRead, TokenRequest, UserCreate, UserRead
from core.deps import RedisDep, SessionDep, SettingsDep
from core.routing import CommittingRoute

router = APIRouter(prefix="/api", tags=["accounts"], route_class=CommittingRoute)


def user_read(user: StaffUser) -> UserRead:
    return UserRead(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        all_communities=user.all_communities,
        is_active=user.is_active,
        community_ids=sorted(user.community_ids),
        last_login_at=user.last_login_at,
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


@router.post("/auth/token", response_model=TokenRead)
def create_token(
    body: TokenRequest, request: Request, session: SessionDep, settings: SettingsDep, redis: RedisDep
) -> TokenRead:
    user = service.authenticate(
        session=session,
        username=body.username,
        password=body.password,
        client=client_address(request),
        throttle=service.LoginThrottle.from_settings(settings, redis),
    )
    token, record = service.issue_token(
        session=session, user=user, kind=TokenKind.api, ttl=timedelta(days=settings.api_token_days)
    )
    return TokenRead(access_token=token, expires_at=record.expires_at)


@router.get("/auth/me", response_model=UserRead)
def me(user: CurrentUser) -> UserRead:
    return user_read(user)


@router.get("/users", response_model=list[UserRead])
def list_users(admin: AdminUser, session: SessionDep) -> list[UserRead]:
    return [user_read(u) for u in service.list_users(session=session, company_id=admin.company_id)]


@router.post("/users", response_model=UserRead, status_code=201)
def create_user(body: UserCreate, admin: AdminUser, session: SessionDep) -> UserRead:
    user = service.create_user(
        session=session,
        company_id=admin.company_id,
        username=body.username,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
        community_ids=body.community_ids,
        all_communities=body.all_communities,
    )
    return user_read(user)
