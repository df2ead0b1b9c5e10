"""Staff accounts: passwords, logins, tokens, and who may see which community."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import AuthToken, Role, StaffCommunity, StaffUser, TokenKind
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized
from core.tenancy import Scope
from org.models import Community

_hasher = PasswordHasher()  # argon2id with the library's maintained defaults
_DUMMY_HASH = _hasher.hash("timing-equaliser")  # verified when the user does not exist
MIN_PASSWORD_LENGTH = 8
BAD_LOGIN = "用户名或密码错误"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"密码至少 {MIN_PASSWORD_LENGTH} 位")
    return _hasher.hash(password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    *,
    session: Session,
    company_id: int,
    username: str,
    password: str,
    role: Role,
    display_name: str | None = None,
    community_ids: Iterable[int] = (),
    all_communities: bool = False,
) -> StaffUser:
    username = username.strip()
    if not username:
        raise InvalidInput("用户名不能为空")
    if session.scalar(select(StaffUser).where(StaffUser.username == username)) is not None:
        raise Conflict(f"用户名 {username} 已存在")
    ids = set(community_ids)
    if ids:
        found = set(
            session.scalars(
                select(Community.id).where(Community.id.in_(ids), Community.company_id == company_id)
            )
        )
        if missing := ids - found:
            raise NotFound(f"小区不存在: {sorted(missing)}")
    if role is Role.admin:
        all_communities = True  # an administrator manages the whole company
    user = StaffUser(
        company_id=company_id,
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role,
        all_communities=all_communities,
        scopes=[StaffCommunity(community_id=cid) for cid in sorted(ids)],
    )
    session.add(user)
    session.flush()
    return user


def _throttle_key(username: str, client: str) -> str:
    return f"anju:login-failures:{username.lower()}:{client}"


def authenticate(
    *,
    session: Session,
    username: str,
    password: str,
    client: str = "-",
    throttle: redis.Redis | None = None,
    max_failures: int = 10,
    lockout_minutes: int = 15,
) -> StaffUser:
    """The active user with these credentials, or Unauthorized; repeated failures are throttled."""
    username = username.strip()  # the name looked up and the name counted must be the same
    key = _throttle_key(username, client)
    if throttle is not None:
        failures = int(throttle.get(key) or 0)
        if failures >= max_failures:
            raise TooManyRequests(f"登录失败次数过多，请 {lockout_minutes} 分钟后再试")
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or not user.is_active:
        if throttle is not None:
            with throttle.pipeline() as pipe:
                pipe.incr(key)
                pipe.expire(key, lockout_minutes * 60)
                pipe.execute()
        raise Unauthorized(BAD_LOGIN)
    if throttle is not None:
        throttle.delete(key)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    return user


def issue_token(
    *, session: Session, user: StaffUser, kind: TokenKind, ttl: timedelta
) -> tuple[str, AuthToken]:
    token = secrets.token_urlsafe(32)
    record = AuthToken(user_id=user.id, kind=kind, token_hash=_token_hash(token), expires_at=utcnow() + ttl)
    session.add(record)
    session.flush()
    return token, record


def user_for_token(*, session: Session, token: str, kind: TokenKind) -> StaffUser:
    record = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(token)))
    if record is None or record.kind != kind or record.revoked or record.expires_at <= utcnow():
        raise Unauthorized("登录已失效，请重新登录")
    if not record.user.is_active:
        raise Unauthorized("账号已停用")
    return record.user


def revoke_token(*, session: Session, token: str) -> None:
    record = session.scalar(select(AuthToken).where(AuthToken.token_hash == _token_hash(token)))
    if record is not None:
        record.revoked = True


def scope_for(user: StaffUser) -> Scope:
    """What this member of staff may see: their company, and all of its communities or theirs."""
    return Scope(
        company_id=user.company_id,
        community_ids=None if user.all_communities else frozenset(user.community_ids),
    )


def accessible_community_ids(*, session: Session, user: StaffUser) -> set[int]:
    if user.all_communities:
        return set(session.scalars(select(Community.id).where(Community.company_id == user.company_id)))
    return user.community_ids


def require_role(user: StaffUser, *roles: Role) -> None:
    if user.role not in roles:
        raise Forbidden("您的角色无权执行此操作")


def works_in(user: StaffUser, community: Community) -> bool:
    return community.company_id == user.company_id and (
        user.all_communities or community.id in user.community_ids
    )


def require_community(*, session: Session, user: StaffUser, community_id: int) -> Community:
    """The community, if this user may work in it. Another company's or another team's community
    is answered exactly like one that does not exist (404): ids are small sequential numbers, and
    a 403 would tell a caller which ones are real."""
    community = session.get(Community, community_id)
    if community is None or not works_in(user, community):
        raise NotFound("小区不存在")
    return community


def list_users(*, session: Session, company_id: int) -> list[StaffUser]:
    return list(
        session.scalars(select(StaffUser).where(StaffUser.company_id == company_id).order_by(StaffUser.id))
    )


def get_user_by_username(*, session: Session, username: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is None:
        raise NotFound("账号不存在")
    return user
