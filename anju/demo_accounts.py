"""The demo's logins, apart from the demo data itself: `anju up` prints them in its banner without
importing what seeding needs (the supervisor of the whole group stays small)."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_PASSWORD = "anju-demo-2026"  # documented in the README; demo mode only


@dataclass(frozen=True)
class DemoAccount:
    username: str
    display_name: str
    role: str  # accounts.models.Role's value
    communities: tuple[str, ...]  # community codes; empty with all_communities


DEMO_ACCOUNTS = (
    DemoAccount("agent", "客服小林", "agent", ("cuihu", "jinjiang")),
    DemoAccount("agent2", "客服小周", "agent", ("cuihu", "jinjiang")),
    DemoAccount("supervisor", "客服主管王敏", "supervisor", ("cuihu", "jinjiang", "binjiang")),
    DemoAccount("pr", "品牌专员陈晨", "pr", ("cuihu", "jinjiang", "binjiang")),
    DemoAccount("admin", "系统管理员", "admin", ()),
)
