"""Tenant isolation as a property of the data layer.

Every row that belongs to a company (and most to one community of it) declares how: a table's
class names its rule in ``__tenant__`` (see :class:`Tenant`). A session that works for a member of
staff carries that person's :class:`Scope`; then

- every ORM query of the session — ``session.get``, ``select``, relationship loads, ORM updates and
  deletes — sees only the rows of the scope (``with_loader_criteria`` on each tenant table), so an
  id of another company or of a community the caller does not work in is simply not found: the
  caller gets the same 404 as for an id that does not exist, whichever way the id arrived (path,
  query, body, form) and whichever service looks it up;
- every row the session writes is checked before the flush: its own company and community must be
  the caller's, and every foreign key it sets must point at a row the caller can see. A service
  that copies an id from a request body into a new row without looking it up still cannot link
  another tenant's conversation, resident or case.

Sessions without a scope (residents' channels, which name their community themselves; workers and
the scheduler, which act for the system) are not filtered. Raw SQL (``text()``, Core statements on
tables) is not filtered either: request paths use the ORM only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Join, Table, event, false, or_, select
from sqlalchemy.orm import (
    ORMExecuteState,
    Session,
    UOWTransaction,
    with_loader_criteria,
)
from sqlalchemy.orm.attributes import get_history
from sqlalchemy.sql.base import ExecutableOption
from sqlalchemy.sql.selectable import AliasedReturnsRows, TableClause

from core.errors import NotFound

log = logging.getLogger(__name__)

SCOPE_KEY = "anju_tenant_scope"


@dataclass(frozen=True)
class Scope:
    """Whose rows a session may see: one company, and all of its communities or only some."""

    company_id: int
    community_ids: frozenset[int] | None = None  # None: every community of the company, new ones too

    def sees_community(self, community_id: int | None) -> bool:
        return community_id is not None and (self.community_ids is None or community_id in self.community_ids)


Rule = Callable[[Any, Scope], ColumnElement[bool]]


def _table(name: str) -> Table:
    from core.db import Base

    return Base.metadata.tables[name]


def _communities(scope: Scope) -> Any:
    """The ids of the scope's communities: a literal list, or the company's as a subquery."""
    if scope.community_ids is not None:
        return sorted(scope.community_ids)
    community = _table("community")
    return select(community.c.id).where(community.c.company_id == scope.company_id).scalar_subquery()


class Tenant:
    """Rules a table's class names in ``__tenant__``: how its rows belong to a company."""

    @staticmethod
    def company(column: str = "company_id") -> Rule:
        """Company-wide rows (accounts, sources, policies): every member of staff of the company."""
        return lambda cls, scope: getattr(cls, column) == scope.company_id

    @staticmethod
    def community(column: str = "community_id") -> Rule:
        """Rows of one community (residents, conversations, cases, work orders)."""

        def rule(cls: Any, scope: Scope) -> ColumnElement[bool]:
            if scope.community_ids is None and hasattr(cls, "company_id"):
                return cls.company_id == scope.company_id  # type: ignore[no-any-return]
            if scope.community_ids is not None and not scope.community_ids:
                return false()
            return getattr(cls, column).in_(_communities(scope))  # type: ignore[no-any-return]

        return rule

    @staticmethod
    def company_or_community(company: str = "company_id", community: str = "community_id") -> Rule:
        """Rows of the company that may name one community (an opinion event, a canned reply):
        company-wide ones are every member's, the others only that community's staff's."""

        def rule(cls: Any, scope: Scope) -> ColumnElement[bool]:
            mine = getattr(cls, company) == scope.company_id
            if scope.community_ids is None:
                return mine
            column = getattr(cls, community)
            return mine & or_(column.is_(None), column.in_(sorted(scope.community_ids)))

        return rule

    @staticmethod
    def itself() -> Rule:
        """The community table: the scope's communities."""

        def rule(cls: Any, scope: Scope) -> ColumnElement[bool]:
            mine = cls.company_id == scope.company_id
            return mine if scope.community_ids is None else mine & cls.id.in_(sorted(scope.community_ids))

        return rule

    @staticmethod
    def the_company() -> Rule:
        return lambda cls, scope: cls.id == scope.company_id

    @staticmethod
    def via(column: str, parent: str) -> Rule:
        """Rows that belong to a parent row (a message to its conversation, a note to its case):
        visible when the parent is."""

        def rule(cls: Any, scope: Scope) -> ColumnElement[bool]:
            parent_table = _table(parent)
            parent_rule = _rules()[parent_table]
            return getattr(cls, column).in_(
                select(parent_table.c.id).where(parent_rule(parent_table.c, scope)).scalar_subquery()
            )

        return rule


# --- the rules of every mapped table ----------------------------------------------------------

_RULES: dict[Table, Rule] = {}
_CLASSES: dict[Table, type] = {}
_BY_NAME: dict[str, type] = {}
_MAPPED = 0


def _rules() -> dict[Table, Rule]:
    """Every tenant table's rule, read from the mapped classes (again whenever more were mapped:
    a process imports a domain's models when it first needs them)."""
    global _MAPPED
    from core.db import Base

    mappers = Base.registry.mappers
    if len(mappers) != _MAPPED:
        for mapper in mappers:
            rule = mapper.class_.__dict__.get("__tenant__")
            if rule is not None and isinstance(mapper.local_table, Table):
                _RULES[mapper.local_table] = rule
                _CLASSES[mapper.local_table] = mapper.class_
                _BY_NAME[mapper.local_table.name] = mapper.class_
        _MAPPED = len(mappers)
    return _RULES


def tenant_classes() -> dict[type, Rule]:
    rules = _rules()
    return {_CLASSES[t]: r for t, r in rules.items()}


def untenanted_tables() -> list[str]:
    """Tables with no rule: system tables no request reaches by id (checked by a test, so a new
    table has to say which it is)."""
    from core.db import Base

    rules = _rules()
    return sorted(t.name for t in Base.metadata.sorted_tables if t not in rules)


def _options(scope: Scope) -> dict[type, ExecutableOption]:
    return {
        cls: with_loader_criteria(cls, rule(cls, scope), include_aliases=True)
        for cls, rule in tenant_classes().items()
    }


# --- sessions ---------------------------------------------------------------------------------


def set_scope(session: Session, scope: Scope | None) -> None:
    """From now on this session sees and writes only ``scope``'s rows (None: no filter)."""
    if scope is None:
        session.info.pop(SCOPE_KEY, None)
        session.info.pop(SCOPE_KEY + "_options", None)
        return
    session.info[SCOPE_KEY] = scope
    session.info[SCOPE_KEY + "_options"] = _options(scope)


def scope_of(session: Session) -> Scope | None:
    scope = session.info.get(SCOPE_KEY)
    if scope is None:
        source = session.info.get(SCOPE_SOURCE_KEY)
        scope = getattr(source, "tenant_scope", None) if source is not None else None
        if scope is not None:
            set_scope(session, scope)
    return scope  # type: ignore[no-any-return]


SCOPE_SOURCE_KEY = "anju_tenant_scope_source"


def scope_from(session: Session, source: object) -> None:
    """Take the scope from ``source.tenant_scope`` when the session first queries (a request's
    state: the caller is known only after the session was opened, and a request without a member
    of staff has none)."""
    session.info[SCOPE_SOURCE_KEY] = source


@event.listens_for(Session, "do_orm_execute")
def _filter(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if scope_of(state.session) is None:
        return
    # The statement's own entities: whatever it returns comes from them (a table it only joins to
    # or filters by yields nothing of its own), and relationship loads are statements of their own.
    options: dict[type, ExecutableOption] = state.session.info[SCOPE_KEY + "_options"]
    classes = {m.class_ for m in state.all_mappers}
    if state.is_select:
        # What it counts or joins: select(func.count()).select_from(Resident) returns no entity.
        statement = state.statement
        froms = (*statement._from_obj, *statement.columns_clause_froms)  # type: ignore[attr-defined]
        classes.update(c for c in map(_BY_NAME.get, _table_names(froms)) if c is not None)
    chosen = [options[c] for c in classes if c in options]
    if chosen:
        state.statement = state.statement.options(*chosen)


def _table_names(froms: Iterable[Any]) -> Iterator[str]:
    for item in froms:
        if isinstance(item, TableClause):
            yield item.name
        elif isinstance(item, Join):
            yield from _table_names((item.left, item.right))
        elif isinstance(item, AliasedReturnsRows):
            yield from _table_names((item.element,))


# --- writes -----------------------------------------------------------------------------------


@event.listens_for(Session, "before_flush")
def _check_writes(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    scope = scope_of(session)
    if scope is None:
        return
    rules = _rules()
    with session.no_autoflush:
        for obj in [*session.new, *session.dirty]:
            table = getattr(type(obj), "__table__", None)
            if table is None:
                continue
            new = obj in session.new
            _check_own_tenancy(session, scope, obj, table, rules, new=new)
            for fk in table.foreign_keys:
                target = fk.column.table
                if target not in rules:
                    continue
                key = fk.parent.key
                value = getattr(obj, key, None)
                if value is None or (not new and not get_history(obj, key).has_changes()):
                    continue
                if session.get(_CLASSES[target], value) is None:
                    log.warning(
                        "refused a write of %s.%s=%s outside the caller's scope", table.name, key, value
                    )
                    raise NotFound(_not_found(target))


def _check_own_tenancy(
    session: Session, scope: Scope, obj: Any, table: Table, rules: dict[Table, Rule], *, new: bool
) -> None:
    """A row's own company and community columns must be the caller's."""
    if table not in rules:
        return
    checks: Iterable[tuple[str, Callable[[Any], bool]]] = (
        ("company_id", lambda v: v == scope.company_id),
        (
            "community_id",
            lambda v: v is None or scope.sees_community(v) or _company_community(session, scope, v),
        ),
    )
    for key, ok in checks:
        if key not in table.c or (table.name == "company" and key == "company_id"):
            continue
        if not new and not get_history(obj, key).has_changes():
            continue
        value = getattr(obj, key, None)
        if value is not None and not ok(value):
            log.warning("refused a write of %s.%s=%s outside the caller's scope", table.name, key, value)
            raise NotFound(_not_found(_table("community") if key == "community_id" else _table("company")))


def _company_community(session: Session, scope: Scope, community_id: int) -> bool:
    """Every community of the company is the scope's when it names none (checked, not assumed)."""
    if scope.community_ids is not None:
        return False
    community = _CLASSES[_table("community")]
    return session.get(community, community_id) is not None


_LABELS = {
    "company": "公司",
    "community": "小区",
    "resident": "住户",
    "conversation": "会话",
    "message": "消息",
    "escalation_case": "案件",
    "work_order": "工单",
    "staff_user": "账号",
}


def _not_found(table: Table) -> str:
    label = getattr(_CLASSES.get(table), "__tenant_label__", None) or _LABELS.get(table.name, "记录")
    return f"{label}不存在"


def get_visible(session: Session, cls: type[Any], ident: int | None, *, label: str | None = None) -> Any:
    """The row, if the session's caller may see it: a missing row and another tenant's row are the
    same 404. The one lookup for an id that arrived in a request."""
    row = session.get(cls, ident) if ident is not None else None
    if row is None:
        table = getattr(cls, "__table__", None)
        raise NotFound(f"{label}不存在" if label else (_not_found(table) if table is not None else None))
    return row


__all__ = [
    "Scope",
    "Tenant",
    "get_visible",
    "scope_from",
    "scope_of",
    "set_scope",
    "tenant_classes",
    "untenanted_tables",
]
