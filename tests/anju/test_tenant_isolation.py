"""Tenant isolation, tried as an attacker would: every operation of the API, with ids that belong
to another community of the caller's company and to another company.

For each operation of the OpenAPI document and each caller, every id the request carries (in the
path, the query, the JSON body or the form) is replaced, one at a time, by the id of a row the
caller must not reach. Each such request must be refused with 404 (or 403), must change nothing
(the whole database and Redis are compared before and after) and must not show any of the other
tenant's rows (each carries a marker word in its texts). The same request with the caller's own
ids is then sent as a control: it must get past the lookups (2xx, or a refusal that is about the
state of the row, not about finding it), so a refusal above was the id's doing, not a malformed
request's.

A parameter or field the walk does not know fails the test: a new endpoint has to say what its
ids name, and is then walked like the others.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select, text, update

from accounts.models import Role, StaffUser
from anju.models import Base
from core.db import get_database
from core.settings import Settings
from org.models import Community
from tests.conftest import LiveServer
from tests.tenants import PASSWORD, Rows, add_staff, png_bytes, populate, seed_other_company

pytestmark = pytest.mark.slow

# What each name of a parameter or field refers to (the key of ``Rows.ids``).
ID_KINDS = {
    "community_id": "community",
    "community_ids": "community",
    "community": "community_name",  # a crawl source names the community it watches
    "case_id": "case",
    "order_id": "work_order",
    "task_id": "callback",
    "resident_id": "resident",
    "import_id": "resident_import",
    "inbound_id": "inbound",
    "delivery_id": "delivery",
    "source_id": "knowledge_source",
    "event_id": "event",
    "alert_id": "alert",
    "route_id": "alert_route",
    "term_id": "watch_term",
    "conversation_id": "conversation",
    "agent_id": "staff",
    "assignee_id": "staff",
    "key": "crawl_source",
}
# The same name that is a reference in one place and a new value in another.
NEW_VALUES = {("json", "key")}  # the key of a crawl source being created or rewritten
# Operations whose id names a row of a particular kind.
KIND_OF = {("POST /api/cases/{case_id}/survey", "case_id"): "surveyed_case"}
# References by name, not id: an unknown name is an invalid field (422), as a missing one is.
BY_NAME = {"community_name"}
# Names that carry no reference to a tenant's row.
NOT_IDS = {
    "view", "q", "offset", "limit", "status", "by", "since", "until", "grade", "grade_max", "graded",
    "platform", "kind", "pending", "after", "category", "name", "text", "note", "reason", "summary",
    "priority", "score", "comment", "skill", "to", "assignee_name", "department", "description",
    "building", "unit", "room", "title", "first_response_minutes", "resolve_minutes",
    "remind_before_minutes", "channel", "target", "secret", "worst_grade", "escalation", "term",
    "username", "password", "display_name", "role", "all_communities", "code", "city", "address",
    "duty_phone", "mobile", "url", "authority", "config", "enabled", "interval_minutes", "file",
    "photo", "level", "phone", "robot_kind", "robot_url", "robot_secret", "ack_minutes", "key",
}  # fmt: skip
# Operations no member of staff calls: residents' channels and pages name their community by its
# public code and prove who they are by a channel signature or a chat session; health checks.
PUBLIC = {
    "POST /channels/app/messages", "POST /channels/phone/transcripts", "POST /channels/app/{key}/messages",
    "POST /channels/phone/{key}/transcripts",
    "GET /channels/wechat/{key}", "POST /channels/wechat/{key}", "GET /channels/wechat",
    "POST /channels/wechat", "GET /healthz", "GET /readyz", "POST /api/auth/token",
    "POST /api/chat", "GET /api/chat/history", "GET /api/chat/stream",
}  # fmt: skip
# Live streams carry no id; what they send is filtered by the caller's communities (their own tests).
STREAMS = {"GET /api/console/stream", "GET /api/opinion/stream"}
# A control may meet the row in a state the operation does not accept (a case already taken, a
# work order that cannot move that way): that is past the lookup, which is what the control shows.
STATE_REFUSALS = {409, 422}


@dataclass
class Caller:
    username: str
    own: Rows
    foreign: list[Rows]
    client: httpx.Client = field(repr=False, default=None)  # type: ignore[assignment]
    exercised: set[str] = field(default_factory=set)


@dataclass
class World:
    server: LiveServer
    settings: Settings
    rows: dict[str, Rows]
    callers: list[Caller]


def _staff_id(session: Any, company_id: int, username: str) -> int:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    assert user is not None and user.company_id == company_id
    return int(user.id)


@pytest.fixture
def world(demo: Settings) -> Iterator[World]:
    with get_database(demo).session() as session:
        seed_other_company(session)
        add_staff(session, username="agent_b", role=Role.agent, community_codes=["yifang"])
        add_staff(session, username="sup_cuihu", role=Role.supervisor, community_codes=["cuihu"])
        add_staff(session, username="pr_cuihu", role=Role.pr, community_codes=["cuihu"])
        rows = {
            "cuihu": populate(session, community_code="cuihu", marker="翠湖自有"),
            "binjiang": populate(session, community_code="binjiang", marker="滨江机密"),
            "yifang": populate(session, community_code="yifang", marker="乙方机密"),
        }
        for code, r in rows.items():
            community = session.scalar(select(Community).where(Community.code == code))
            assert community is not None
            r.keys["community_name"] = community.name
            r.ids["community"] = community.id
        rows["cuihu"].ids["staff"] = _staff_id(session, rows["cuihu"].company_id, "agent2")
        rows["yifang"].ids["staff"] = _staff_id(session, rows["yifang"].company_id, "agent_b")
    cuihu, binjiang, yifang = rows["cuihu"], rows["binjiang"], rows["yifang"]
    callers = [
        Caller("agent", cuihu, [binjiang, yifang]),
        Caller("sup_cuihu", cuihu, [binjiang, yifang]),
        Caller("pr_cuihu", cuihu, [binjiang, yifang]),
        Caller("admin", cuihu, [yifang]),
        Caller("admin_b", yifang, [cuihu, binjiang]),
    ]
    with LiveServer(demo) as server:
        for caller in callers:
            caller.client = server.login(caller.username, PASSWORD)
        world = World(server, demo, rows, callers)
        _add_photos(world)
        yield world
        for caller in callers:
            caller.client.close()


def _add_photos(world: World) -> None:
    """A photo on each work order, uploaded by someone who may (its name is then a real one)."""
    by_company = {c.own.company_id: c for c in world.callers if c.username in ("admin", "admin_b")}
    for r in world.rows.values():
        client = by_company[r.company_id].client
        response = client.post(
            f"/api/work-orders/{r.ids['work_order']}/photos",
            files={"photo": ("a.png", png_bytes(), "image/png")},
        )
        assert response.status_code == 201, response.text
        photos = [p for e in response.json()["events"] for p in e["photos"]]
        r.keys["photo"] = photos[-1]


# --- requests built from the OpenAPI document --------------------------------------------------


@dataclass
class Slot:
    """One place in a request where an id goes."""

    where: str  # path, query, json, form
    name: str
    kind: str
    many: bool = False


@dataclass
class Call:
    method: str
    path: str
    op: dict[str, Any]
    slots: list[Slot]

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _plain(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(spec, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(spec, s) for s in schema[key] if s.get("type") != "null"]
            return options[0] if options else {"type": "null"}
    return schema


def _example(spec: dict[str, Any], schema: dict[str, Any], name: str) -> Any:
    schema = _plain(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return {k: _example(spec, v, k) for k, v in props.items() if k in required or k in ID_KINDS}
    if kind == "array":
        return [_example(spec, schema.get("items", {}), name)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1) if "maximum" not in schema else int(schema["maximum"])
    if kind == "number":
        return max(float(schema.get("minimum", 1)), 1.0)
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2026-01-01T00:00:00+08:00"
        return "测试内容"[: schema.get("maxLength", 20)] or "x"
    return None


def _body_fields(spec: dict[str, Any], op: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    content = op.get("requestBody", {}).get("content", {})
    for media, where in (("application/json", "json"), ("multipart/form-data", "form")):
        if media in content:
            return where, _resolve(spec, content[media]["schema"])
    return None, {}


def calls(spec: dict[str, Any]) -> list[Call]:
    out = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            call = Call(method.upper(), path, op, [])
            if call.name in PUBLIC or call.name in STREAMS:
                continue
            for param in op.get("parameters", []):
                _add_slot(call, param["in"], param["name"])
            where, schema = _body_fields(spec, op)
            if where is not None:
                props = schema.get("properties") or _resolve(spec, schema.get("items", {})).get(
                    "properties", {}
                )
                for name in props:
                    _add_slot(call, where, name)
            out.append(call)
    return out


def _add_slot(call: Call, where: str, name: str) -> None:
    if name in ID_KINDS and (where, name) not in NEW_VALUES:
        kind = KIND_OF.get((call.name, name), ID_KINDS[name])
        call.slots.append(Slot(where, name, kind, many=name.endswith("_ids")))
    else:
        assert name in NOT_IDS, (
            f"{call.name}: what does {where} parameter {name!r} refer to? Add it to ID_KINDS (a row "
            f"of a tenant: it is then walked with foreign ids) or to NOT_IDS."
        )


def _value(rows: Rows, kind: str) -> Any:
    if kind in ("crawl_source", "community_name"):
        return rows.keys[kind]
    return rows.ids[kind]


@dataclass
class Request:
    method: str
    url: str
    params: dict[str, Any]
    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    content: bytes | None = None


UNIQUE = {"n": 0}


def _unique(prefix: str) -> str:
    UNIQUE["n"] += 1
    return f"{prefix}{UNIQUE['n']}{uuid.uuid4().hex[:4]}"


def build(spec: dict[str, Any], call: Call, rows: Rows, replace: tuple[Slot, Rows] | None = None) -> Request:
    """The request with ``rows``' ids everywhere, except ``replace``'s slot, which gets the
    other tenant's."""

    def value(slot: Slot) -> Any:
        source = replace[1] if replace is not None and replace[0] is slot else rows
        v = _value(source, slot.kind)
        return [v] if slot.many else v

    path = call.path
    params: dict[str, Any] = {}
    for slot in call.slots:
        if slot.where == "path":
            path = path.replace("{" + slot.name + "}", str(value(slot)))
        elif slot.where == "query":
            params[slot.name] = value(slot)
    path = path.replace("{category}", "报修").replace("{name}", rows.keys.get("photo", "x.png"))
    request = Request(call.method, path, params)
    where, schema = _body_fields(spec, call.op)
    if where == "json":
        body = _example(spec, schema, "")
        body = _override(call, body, rows)
        for slot in call.slots:
            if slot.where == "json":
                if isinstance(body, list):
                    for item in body:
                        item[slot.name] = value(slot)
                else:
                    body[slot.name] = value(slot)
        if call.name == "PUT /api/crawl/sources/{key}":
            body["key"] = path.rsplit("/", 1)[-1]
        request.json = body
    elif where == "form":
        request.data, request.files = _form(call, rows)
        for slot in call.slots:
            if slot.where == "form":
                v = value(slot)
                request.data[slot.name] = ",".join(map(str, v)) if isinstance(v, list) else v
    if call.name == "POST /api/crawl/sources/import":
        request.content = _sources_yaml(value(Slot("body", "community", "community_name")))
    return request


def _override(call: Call, body: Any, rows: Rows) -> Any:
    """Bodies the generated example would not get past validation with."""
    name = call.name
    if name == "POST /api/users":
        body.update(username=_unique("u"), password="very-long-password-2026", role="agent")
    elif name == "POST /api/communities":
        body.update(code=_unique("c-"), name=_unique("小区"))
    elif name == "POST /api/communities/{community_id}/residents":
        body.update(name="测试住户", mobile=f"137{uuid.uuid4().int % 10**8:08d}")
    elif name in ("POST /api/crawl/sources", "PUT /api/crawl/sources/{key}"):
        body.update(
            key=_unique("k"), name="测试源", kind="rss", url="https://bbs.example.com/rss.xml", enabled=False
        )
    elif name in ("POST /api/opinion/alert-routes", "PUT /api/opinion/alert-routes/{route_id}"):
        body.update(name="测试群", channel="email", target="pr@example.com", worst_grade=2)
    elif name == "POST /api/opinion/watch-terms":
        body.update(term=_unique("词"), kind="community")
    elif name == "POST /api/cases":
        body.update(category="咨询", summary="测试")
    elif name == "POST /api/work-orders/{order_id}/move":
        body.update(to="已派单")
    elif name == "POST /api/callbacks/{task_id}/done":
        body.update(status="已回电")
    elif name == "POST /api/opinion/events/{event_id}/status":
        body.update(status="confirmed")
    elif name == "PUT /api/communities/{community_id}/duty-chain":
        body = [{"name": "测试值班", "phone": "13900000001", "ack_minutes": 5}]
    elif name == "POST /api/cases/{case_id}/survey":
        body.update(score=5)
    elif name == "POST /api/cases/{case_id}/transfer":
        body.update(note="请协助")
    elif name == "PUT /api/sla-policies/{category}":
        body.update(first_response_minutes=15, resolve_minutes=1440, remind_before_minutes=5)
    return body


def _form(call: Call, rows: Rows) -> tuple[dict[str, Any], dict[str, Any]]:
    if "photos" in call.path:
        return {}, {"photo": ("a.png", png_bytes(), "image/png")}
    if "imports" in call.path:
        return {}, {
            "file": (
                "r.csv",
                "姓名,手机号,楼栋,单元,房号\n测试,13711112222,1栋,1单元,101\n".encode(),
                "text/csv",
            )
        }
    faq = f"问题,答案\n{_unique('问')},测试答案\n".encode()
    return {}, {"file": ("faq.csv", faq, "text/csv")}


def _sources_yaml(community: str) -> bytes:
    return (
        "sources:\n"
        f"  - key: {_unique('y')}\n    name: 测试\n    kind: rss\n"
        "    url: https://bbs.example.com/rss.xml\n    enabled: false\n"
        f"    community: {community}\n"
    ).encode()


def send(client: httpx.Client, request: Request) -> httpx.Response:
    return client.request(
        request.method,
        request.url,
        params=request.params,
        json=request.json,
        data=request.data,
        files=request.files,
        content=request.content,
        headers={"Content-Type": "application/x-yaml"} if request.content is not None else None,
    )


# --- what must not change ----------------------------------------------------------------------


def snapshot(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with get_database(settings).engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name == "auth_token":
                continue  # logins of the walk's own callers
            rows = conn.execute(text(f'SELECT * FROM "{table.name}"')).all()
            out[table.name] = sorted(repr(tuple(r)) for r in rows)
    client = redis.Redis.from_url(settings.redis_url)
    out["redis"] = sorted((k, client.type(k), client.dump(k)) for k in client.keys("*") if not _volatile(k))
    return out


def _volatile(key: bytes) -> bool:
    # Login throttles of the walk's own callers.
    return key.startswith(b"anju:login")


def _diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]


def _refused(response: httpx.Response) -> bool:
    return response.status_code in (403, 404)


def _leaks(response: httpx.Response, foreign: list[Rows]) -> list[str]:
    return [r.marker for r in foreign if r.marker in response.text]


ORDER = {"GET": 0, "PUT": 1, "POST": 1, "DELETE": 2}


@pytest.mark.postgres
def test_every_operation_refuses_other_tenants_ids(world: World) -> None:
    spec = world.server.client().get("/api/openapi.json").json()
    walk = sorted(calls(spec), key=lambda c: (ORDER[c.method], c.path))
    problems: list[str] = []
    tried = 0
    for call in walk:
        # Every caller's foreign ids first, between two snapshots of everything; then the controls.
        before = snapshot(world.settings)
        for caller in world.callers:
            for slot in call.slots:
                for other in caller.foreign:
                    if slot.kind not in other.ids and slot.kind not in other.keys:
                        continue  # e.g. staff: the company's directory is every member's
                    response = send(caller.client, build(spec, call, caller.own, (slot, other)))
                    tried += 1
                    by_name = slot.kind in BY_NAME and response.status_code == 422
                    if not (_refused(response) or by_name):
                        problems.append(
                            f"{call.name} as {caller.username} with {other.community_code}'s "
                            f"{slot.name}: {response.status_code} {response.text[:200]}"
                        )
                    if leaked := _leaks(response, caller.foreign):
                        problems.append(f"{call.name} as {caller.username}: shows {leaked}")
        if changed := _diff(before, snapshot(world.settings)):
            problems.append(f"{call.name} with foreign ids changed {changed}")
        for caller in world.callers:
            control = send(caller.client, build(spec, call, caller.own))
            if leaked := _leaks(control, caller.foreign):
                problems.append(f"{call.name} as {caller.username} (own ids) shows {leaked}")
            if control.status_code == 403:
                continue  # not this caller's to do (a role, or a case another agent holds)
            past_lookup = control.is_success or (
                control.status_code in STATE_REFUSALS and "details" not in control.json().get("error", {})
            )
            if not past_lookup:
                problems.append(
                    f"{call.name} as {caller.username} with own ids did not get past the lookups: "
                    f"{control.status_code} {control.text[:200]}"
                )
            caller.exercised.add(call.name)
    print(f"tenant walk: {len(walk)} operations, {len(world.callers)} callers, {tried} foreign-id requests")
    unexercised = {c.name for c in walk} - set().union(*(c.exercised for c in world.callers))
    assert not unexercised, f"no caller could use these operations: {sorted(unexercised)}"
    assert len(walk) >= 82, "the walk lost operations"
    assert not problems, "\n".join(problems)


def test_every_table_says_whose_rows_it_holds() -> None:
    """A new table names its tenancy rule (core.tenancy.Tenant) or is listed here as system data
    that no request reaches by id."""
    from core.tenancy import untenanted_tables

    assert untenanted_tables() == ["effect_record", "faq_entry_community", "knowledge_source_community"]


def test_every_route_is_in_the_walk_or_a_page_without_ids(sqlite_settings: Settings) -> None:
    """Every route the app serves is in the OpenAPI document (so the walk sees it), except pages
    that take no id."""
    from anju.app import create_app

    app = create_app(sqlite_settings)
    documented = {(m.upper(), p) for p, ms in app.openapi()["paths"].items() for m in ms}

    pages = {"/login", "/logout", "/", "/console", "/opinion", "/admin/opinion", "/admin/knowledge",
             "/chat/{community}", "/ack/{token}", "/opinion/ack/{token}", "/demo-site/{path:path}",
             "/api/openapi.json", "/api/docs", "/docs/oauth2-redirect"}  # fmt: skip
    served = set()
    for route in app.routes:
        # FastAPI keeps included routers whole; their routes are listed by the router.
        contexts = getattr(route, "effective_route_contexts", None)
        for r in contexts() if contexts else [route]:
            if hasattr(r, "methods") and r.methods:
                served.update((m, r.path) for m in r.methods)
    assert len(served) > 100, "the app's routes could not be listed"
    hidden = {(m, p) for m, p in served if (m, p) not in documented and p not in pages and m != "HEAD"}
    assert not hidden, json.dumps(sorted(hidden), ensure_ascii=False)


# --- the reproductions of the report, step by step ---------------------------------------------


def test_an_agent_cannot_take_over_another_communitys_emergency_through_a_case_body(
    demo_kb: Settings,
) -> None:
    """As reported: the agent (翠湖, 锦江) posted a case naming 滨江壹号's open emergency
    conversation; the call reopened that case, raised it and paged 滨江's duty chain, and the agent
    then read the conversation and replied into the resident's web chat. (No worker runs: the
    paging job the emergency queued stays queued, so Redis and the case change only if the attack
    does something.)"""
    from tests.escalation.test_console_flow import history, say

    with get_database(demo_kb).session() as session:
        seed_other_company(session)
    with LiveServer(demo_kb) as live, live.client() as resident, live.login("agent") as agent:
        session_id = uuid.uuid4().hex
        turn = say(resident, session_id, "电梯里关了人，快来", community="binjiang")
        assert turn["action"] == "emergency"
        with get_database(demo_kb).session() as session:
            from escalation.models import Case

            case = session.get(Case, turn["case_id"])
            assert case is not None
            conversation_id, before = case.conversation_id, (case.priority, case.page_level, case.summary)
            from org.models import Resident

            neighbour = session.scalar(select(Resident.id).where(Resident.community_id == case.community_id))
        cuihu = next(c["id"] for c in agent.get("/api/communities").json() if c["code"] == "cuihu")
        seen = snapshot(demo_kb)
        for body in (
            {"community_id": cuihu, "category": "咨询", "summary": "x", "conversation_id": conversation_id},
            {"community_id": cuihu, "category": "紧急", "summary": "x", "resident_id": neighbour},
            {"community_id": 3, "category": "咨询", "summary": "x"},
        ):
            refused = agent.post("/api/cases", json=body)
            assert refused.status_code == 404, refused.text
        assert agent.get(f"/api/cases/{turn['case_id']}").status_code == 404
        assert agent.post(f"/api/cases/{turn['case_id']}/reply", json={"text": "我是客服"}).status_code == 404
        assert _diff(seen, snapshot(demo_kb)) == []
        with get_database(demo_kb).session() as session:
            case = session.get(Case, turn["case_id"])
            assert case is not None and (case.priority, case.page_level, case.summary) == before
        assert not any(
            m.get("text") == "我是客服" for m in history(resident, session_id, community="binjiang")
        )

    with LiveServer(demo_kb) as live, live.login("admin_b", PASSWORD) as other:
        assert other.post(f"/api/cases/{turn['case_id']}/reply", json={"text": "乙方来信"}).status_code == 404
        created = other.post("/api/cases", json={"community_id": 1, "category": "咨询", "summary": "x"})
        assert created.status_code == 404
        assert other.get(f"/api/residents/{neighbour}").status_code == 404


def test_a_residents_history_shows_only_the_callers_communities(demo: Settings) -> None:
    """The same owner (one phone) in 翠湖 and 滨江: the history is one person's, but an agent of
    翠湖 sees only what was said in 翠湖."""
    from conversations.models import Channel, Conversation, Message, Sender
    from org.models import IdentityKind, Resident, ResidentIdentity

    with get_database(demo).session() as session:
        pair = []
        for code in ("cuihu", "binjiang"):
            community = session.scalar(select(Community).where(Community.code == code))
            assert community is not None
            resident = Resident(community_id=community.id, name="同一业主")
            session.add(resident)
            session.flush()
            session.add(ResidentIdentity(resident_id=resident.id, community_id=community.id,
                                         kind=IdentityKind.mobile, value="13912340000"))  # fmt: skip
            conversation = Conversation(
                company_id=community.company_id,
                community_id=community.id,
                channel=Channel.web,
                external_id=f"s-{code}",
                resident_id=resident.id,
            )
            session.add(conversation)
            session.flush()
            session.add(
                Message(conversation_id=conversation.id, sender=Sender.resident, text=f"{code}的留言")
            )
            pair.append(resident.id)
    with LiveServer(demo) as live, live.login("agent") as agent, live.login("supervisor") as boss:
        mine = agent.get(f"/api/residents/{pair[0]}/history").json()
        everything = boss.get(f"/api/residents/{pair[0]}/history").json()
        assert agent.get(f"/api/residents/{pair[1]}/history").status_code == 404
    assert [m["text"] for m in mine] == ["cuihu的留言"]
    assert sorted(m["text"] for m in everything) == ["binjiang的留言", "cuihu的留言"]


def test_a_scoped_session_refuses_to_write_a_reference_it_did_not_look_up(demo: Settings) -> None:
    """The data layer's own guard: a service that copies an id from a request into a new row,
    without looking it up, still cannot link another tenant's row."""
    from conversations.models import Channel, Conversation
    from core.errors import NotFound
    from core.tenancy import Scope, set_scope
    from escalation.models import Case, CaseCategory, Priority

    database = get_database(demo)
    with database.session() as session:
        binjiang = session.scalar(select(Community).where(Community.code == "binjiang"))
        assert binjiang is not None
        foreign = Conversation(company_id=binjiang.company_id, community_id=binjiang.id,
                               channel=Channel.web, external_id="s-x")  # fmt: skip
        session.add(foreign)
        session.flush()
        foreign_id, company_id = foreign.id, binjiang.company_id
    scope = Scope(company_id=company_id, community_ids=frozenset({1, 2}))
    due = datetime.now(UTC)
    for row in (
        Case(company_id=company_id, community_id=1, conversation_id=foreign_id, category=CaseCategory.inquiry,
             priority=Priority.normal, reason="x", summary="x", first_response_due=due, resolve_due=due),
        Case(company_id=company_id, community_id=3, category=CaseCategory.inquiry, priority=Priority.normal,
             reason="x", summary="x", first_response_due=due, resolve_due=due),
    ):  # fmt: skip
        with pytest.raises(NotFound), database.session() as session:
            set_scope(session, scope)
            session.add(row)
            session.flush()
    with database.session() as session:
        set_scope(session, scope)
        assert session.get(Conversation, foreign_id) is None
        assert (
            session.scalar(
                select(func.count()).select_from(Conversation).where(Conversation.id == foreign_id)
            )
            == 0
        )
        assert session.execute(update(Conversation).values(context={"x": 1})).rowcount == 0  # type: ignore[attr-defined]
    with database.session() as session:
        assert session.get(Conversation, foreign_id) is not None  # unscoped (workers): everything


def test_live_streams_tell_staff_only_of_their_communities(demo: Settings) -> None:
    """The console and the opinion feed push changes as they happen: a PR officer and an agent of
    翠湖 hear of 翠湖's changes and the company's, never 滨江's (not even an id)."""
    import threading

    from sentiment.feed import publish_changes

    with get_database(demo).session() as session:
        add_staff(session, username="pr_cuihu", role=Role.pr, community_codes=["cuihu"])
        ids = {c.code: c.id for c in session.scalars(select(Community))}
        company_id = session.scalar(select(Community.company_id).where(Community.code == "cuihu"))
    assert company_id is not None
    heard: dict[str, list[dict[str, Any]]] = {"pr_cuihu": [], "agent": []}
    with LiveServer(demo) as live:
        clients = {"pr_cuihu": live.login("pr_cuihu", PASSWORD), "agent": live.login("agent")}
        ready = {name: threading.Event() for name in clients}
        paths = {"pr_cuihu": "/api/opinion/stream", "agent": "/api/console/stream"}

        def listen(name: str) -> None:
            with clients[name].stream("GET", paths[name], timeout=15) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: ready"):
                        ready[name].set()
                    elif line.startswith("data:") and line[5:].strip() != "{}":
                        heard[name].append(json.loads(line[5:]))
                        if heard[name][-1].get("last") or 904 in heard[name][-1].get("event_ids", []):
                            return

        threads = [threading.Thread(target=listen, args=(n,), daemon=True) for n in clients]
        for t in threads:
            t.start()
        assert all(r.wait(10) for r in ready.values())
        from core.live import company_topic, publish

        publish_changes(settings=demo, company_id=company_id, event_ids=[901], community_id=ids["binjiang"])
        publish_changes(settings=demo, company_id=company_id, event_ids=[902], community_id=ids["cuihu"])
        publish_changes(settings=demo, company_id=company_id, event_ids=[903])  # the whole company
        publish(
            demo, company_topic(company_id), {"type": "case", "case_id": 1, "community_id": ids["binjiang"]}
        )
        publish(demo, company_topic(company_id), {"type": "case", "case_id": 2, "community_id": ids["cuihu"],
                                                  "last": True})  # fmt: skip
        publish_changes(settings=demo, company_id=company_id, event_ids=[904], community_id=ids["cuihu"])
        for t in threads:
            t.join(10)
        for client in clients.values():
            client.close()
    opinion = [i for e in heard["pr_cuihu"] for i in e["event_ids"]]
    assert opinion == [902, 903, 904]
    assert [e["case_id"] for e in heard["agent"]] == [2]
