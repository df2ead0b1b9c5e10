"""Staff accounts: passwords, logins, tokens, and who may see which community."""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.models import AuthToken, Role, StaffCommunity, StaffUser, TokenKind
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests, Unauthorized
from core.settings import Settings
from core.tenancy import Scope
from org.models import Community

_hasher = PasswordHasher()  # argon2id with the library's maintained defaults


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user does not exist, so an unknown name costs what a wrong password does.
    Made at the first login, not at import: argon2 takes ~0.3 s and 64 MB, and every process and
    command imports this module."""
    return _hasher.hash("timing-equaliser")


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


@dataclass(frozen=True)
class LoginThrottle:
    """How failed logins are counted in Redis (shared by every API process); see the login_*
    settings. Per (username, address): a lockout that ends with its window. Per username: a
    ceiling past which unknown addresses are slowed to one attempt per ``slow_seconds``."""

    store: redis.Redis
    max_failures: int = 10
    window_seconds: int = 900
    account_max_failures: int = 50
    slow_seconds: int = 5
    known_seconds: int = 30 * 86400

    @classmethod
    def from_settings(cls, settings: Settings, redis_client: redis.Redis) -> LoginThrottle:
        return cls(
            store=redis_client,
            max_failures=settings.login_max_failures,
            window_seconds=max(1, round(settings.login_lockout_minutes * 60)),
            account_max_failures=settings.login_account_max_failures,
            slow_seconds=settings.login_account_slow_seconds,
            known_seconds=settings.login_known_address_days * 86400,
        )

    def _keys(self, username: str, client: str) -> tuple[str, str, str, str]:
        name = hashlib.sha256(username.lower().encode()).hexdigest()[:24]  # any bytes, bounded keys
        address = hashlib.sha256(client.encode()).hexdigest()[:16]
        return (
            f"anju:login-failures:{name}:{address}",
            f"anju:login-account-failures:{name}",
            f"anju:login-account-slot:{name}",
            f"anju:login-known:{name}:{address}",
        )

    def admit(self, username: str, client: str) -> None:
        """Raise TooManyRequests when this attempt may not even be checked."""
        mine, account, slot, known = self._keys(username, client)
        with self.store.pipeline(transaction=False) as pipe:
            pipe.get(mine)
            pipe.ttl(mine)
            pipe.get(account)
            pipe.exists(known)
            failures, ttl, account_failures, is_known = pipe.execute()
        if int(failures or 0) >= self.max_failures:
            minutes = max(1, math.ceil((ttl if ttl and ttl > 0 else self.window_seconds) / 60))
            raise TooManyRequests(f"登录失败次数过多，请 {minutes} 分钟后再试")
        # Many addresses are guessing this password: one attempt per interval for the account
        # from addresses it has never logged in from. Slowed, never locked.
        if (
            int(account_failures or 0) >= self.account_max_failures
            and not is_known
            and not self.store.set(slot, 1, ex=self.slow_seconds, nx=True)
        ):
            raise TooManyRequests(f"该账号近期登录失败次数过多，已限速：请 {self.slow_seconds} 秒后再试")

    def failed(self, username: str, client: str) -> None:
        mine, account, _, _ = self._keys(username, client)
        with self.store.pipeline() as pipe:
            # Fixed windows from the first failure (the key is created with its expiry; INCR keeps
            # it): a lockout ends when its window does, however many attempts arrive meanwhile.
            # (SET NX, not EXPIRE NX: the embedded Redis is 6.2.)
            for key in (mine, account):
                pipe.set(key, 0, ex=self.window_seconds, nx=True)
                pipe.incr(key)
            pipe.execute()

    def succeeded(self, username: str, client: str) -> None:
        mine, _, _, known = self._keys(username, client)
        with self.store.pipeline() as pipe:
            pipe.delete(mine)
            pipe.set(known, 1, ex=self.known_seconds)  # this address skips the account's slowdown
            pipe.execute()


def authenticate(
    *,
    session: Session,
    username: str,
    password: str,
    client: str = "-",
    throttle: LoginThrottle | None = None,
) -> StaffUser:
    """The active user with these credentials, or Unauthorized; repeated failures are throttled."""
    username = username.strip()  # the name looked up and the name counted must be the same
    if throttle is not None:
        throttle.admit(username, client)
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or not user.is_active:
        if throttle is not None:
            throttle.failed(username, client)
        raise Unauthorized(BAD_LOGIN)
    if throttle is not None:
        throttle.succeeded(username, client)
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
