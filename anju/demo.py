"""Demo data: one company, three communities with buildings and residents, one account per role.

All names, addresses and numbers are invented; mobile numbers use the 1380000xxxx range.
"""

from __future__ import annotations

import random

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from accounts import service as accounts_service
from accounts.models import Role
from anju.demo_accounts import DEMO_ACCOUNTS, DEMO_PASSWORD, DemoAccount
from org import service as org_service
from org.models import Community, Company, IdentityKind, ResidentRole

__all__ = ["DEMO_ACCOUNTS", "DEMO_PASSWORD", "DemoAccount", "is_seeded", "seed_demo"]

DEMO_COMMUNITIES = (
    # code, name, city, address, duty phone, buildings, units per building, floors, rooms per floor
    ("cuihu", "翠湖花园", "杭州", "西湖区翠湖路 88 号", "0571-8800-1234", 6, 2, 18, 2),
    ("jinjiang", "锦江苑", "成都", "锦江区滨河东路 16 号", "028-6600-5678", 4, 3, 11, 3),
    ("binjiang", "滨江壹号", "武汉", "江岸区沿江大道 199 号", "027-8500-9012", 3, 2, 32, 4),
)

_FAMILY = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余"
    "于杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红玲建国志海燕晨欣怡浩宇子涵梓轩雨桐思远嘉怡"


def is_seeded(session: Session) -> bool:
    return (session.scalar(select(func.count()).select_from(Company)) or 0) > 0


def seed_demo(
    session: Session,
    *,
    residents_per_community: int = 40,
    seed: int = 20261121,
    knowledge: bool = True,
    opinion_base_url: str | None = None,
) -> Company:
    """Create the demo company; idempotent (returns the existing one when already seeded).

    ``knowledge``: also the demo FAQ and the demo company's service standard (the search index
    is built afterwards, by a job: see ``request_index_build``).
    ``opinion_base_url``: also the opinion sources, crawling the demo site this service serves
    there (``/demo-site/``); the scheduler crawls them within a minute of starting.
    """
    existing = session.scalar(select(Company).where(Company.code == "anju-demo"))
    if existing is not None:
        return existing
    rng = random.Random(seed)
    company = org_service.create_company(
        session=session, code="anju-demo", name="安居示范物业服务有限公司", service_phone="400-800-1234"
    )
    codes: dict[str, Community] = {}
    mobile_serial = 0
    for code, name, city, address, duty, buildings, units, floors, per_floor in DEMO_COMMUNITIES:
        community = org_service.create_community(
            session=session,
            company_id=company.id,
            code=code,
            name=name,
            city=city,
            address=address,
            duty_phone=duty,
        )
        codes[code] = community
        rooms = []
        for b in range(1, buildings + 1):
            for u in range(1, units + 1):
                for floor in range(1, floors + 1):
                    for r in range(1, per_floor + 1):
                        rooms.append((f"{b}栋", f"{u}单元", f"{floor}{r:02d}"))
        for room_spec in rng.sample(rooms, residents_per_community):
            mobile_serial += 1
            room = org_service.ensure_room(
                session=session,
                community_id=community.id,
                building=room_spec[0],
                unit=room_spec[1],
                number=room_spec[2],
            )
            name_ = rng.choice(_FAMILY) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
            role = rng.choices(list(ResidentRole), weights=(7, 2, 1))[0]
            identities = [(IdentityKind.mobile, f"1380000{mobile_serial:04d}")]
            if rng.random() < 0.6:
                identities.append((IdentityKind.wechat_openid, f"oDemo{rng.getrandbits(64):016x}"))
            if rng.random() < 0.3:
                identities.append((IdentityKind.app_user_id, f"app-{mobile_serial:05d}"))
            org_service.create_resident(
                session=session,
                community_id=community.id,
                name=name_,
                role=role,
                room=room,
                identities=identities,
            )
    for account in DEMO_ACCOUNTS:
        accounts_service.create_user(
            session=session,
            company_id=company.id,
            username=account.username,
            password=DEMO_PASSWORD,
            role=Role(account.role),
            display_name=account.display_name,
            community_ids=[codes[c].id for c in account.communities],
        )
    session.flush()
    seed_demo_console(session, company.id, codes)
    if knowledge:
        seed_demo_knowledge(session, company.id)
    if opinion_base_url:
        seed_demo_opinion(session, company.id, opinion_base_url)
    return company


def seed_demo_opinion(session: Session, company_id: int, base_url: str) -> None:
    from core.outbound import OutboundPolicy
    from crawlers.demo_site import DEMO_SOURCES
    from crawlers.schemas import SourceIn
    from crawlers.service import save_source

    # The demo site this service serves is what the demo's sources crawl (demo mode allows it).
    policy = OutboundPolicy.parse([f"{base_url.rstrip('/')}/demo-site/"])

    for key, name, kind, path, authority, config in DEMO_SOURCES:
        data = SourceIn.model_validate(
            {
                "key": key,
                "name": name,
                "kind": kind,
                "url": base_url + path,
                "authority": authority,
                "config": config,
                "interval_minutes": 30,
            }
        )
        save_source(session=session, company_id=company_id, data=data, policy=policy)


DEMO_CANNED_REPLIES = (
    ("已收到", "您好，我是客服，您的情况已经收到，正在为您处理，请稍候。"),
    ("已派维修", "您好，已为您安排维修师傅，师傅会先电话联系您确认上门时间。"),
    ("需要核实", "您好，这个问题需要和相关部门核实，我们核实后会第一时间回复您。"),
    ("办结致谢", "问题已处理完毕，感谢您的耐心。之后会有一条满意度回访，请您抽空评价。"),
)


def seed_demo_console(session: Session, company_id: int, codes: dict[str, Community]) -> None:
    """Canned replies and each community's emergency chain (numbers only: the demo has no group
    robot, so pages go to the log-only SMS gateway)."""
    from escalation.models import CannedReply, DutyContact

    for title, text in DEMO_CANNED_REPLIES:
        session.add(CannedReply(company_id=company_id, title=title, text=text))
    for index, community in enumerate(codes.values()):
        session.add_all([
            DutyContact(community_id=community.id, level=0, name="值班工程师", phone=f"1390000{index}001",
                        ack_seconds=300),
            DutyContact(community_id=community.id, level=1, name="项目经理", phone=f"1390000{index}002",
                        ack_seconds=300),
        ])  # fmt: skip
    session.flush()


DEMO_KNOWLEDGE = (("faq.csv", "居民常见问题"), ("service-standard.md", None))


def seed_demo_knowledge(session: Session, company_id: int) -> None:
    """The demo FAQ and service standard, written for the demo communities."""
    from importlib.resources import files

    from knowledge import service as knowledge_service

    for filename, title in DEMO_KNOWLEDGE:
        content = files("knowledge").joinpath(f"demo/{filename}").read_bytes()
        result = knowledge_service.ingest(
            session=session, company_id=company_id, filename=filename, content=content
        )
        if title:
            result.source.title = title
    session.flush()
