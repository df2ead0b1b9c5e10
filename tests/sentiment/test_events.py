"""Events as the PR feed shows them: the same story on Weibo, Tieba and the news is one event on
3 platforms; other stories and other communities' complaints are other events; an event is
upgraded as posts with spread arrive, and its timeline says so; a spike of residents' complaints
on one topic in one community raises one internal warning, updated as it grows, never doubled."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations.models import Channel, Conversation, Message, Sender
from core.db import get_database
from core.settings import Settings
from escalation.cases import open_case
from escalation.models import CaseCategory, WorkOrderCategory
from escalation.work_orders import create_work_order
from sentiment.events import (
    NEAR_DUPLICATE_BITS,
    building_of,
    check_internal_spikes,
    event_title,
    hamming,
    simhash,
)
from sentiment.models import Event, EventKind, EventLog, Post
from sentiment.risk import RiskPolicy, grade_event
from tests.sentiment.stories import (
    BINJIANG_PARKING_FEE,
    CUIHU_WATER_FEE,
    FLOWERPOT_NEWS,
    FLOWERPOT_TIEBA,
    FLOWERPOT_WEIBO,
    GARAGE_LIUYAN,
    GARAGE_WEIBO,
    JINJIANG_FEE_FORUM,
    JINJIANG_FEE_NEWS,
    JINJIANG_FEE_WEIBO,
    LIFT_WEIBO,
    NOW,
    PRAISE_WEIBO,
    Demo,
    demo_company,
    place,
)

# --- SimHash -------------------------------------------------------------------------------------


def test_a_repost_with_a_line_added_is_a_near_duplicate_and_another_story_is_not() -> None:
    original = simhash(FLOWERPOT_WEIBO.text)
    repost = simhash(FLOWERPOT_WEIBO.text + " 转发")
    other = simhash(GARAGE_WEIBO.text)
    assert -(2**63) <= original < 2**63 and original != 0  # fits PostgreSQL's BIGINT
    assert hamming(original, repost) <= NEAR_DUPLICATE_BITS
    assert hamming(original, other) > 10
    assert simhash("，。！") == 0


def test_titles_and_buildings() -> None:
    assert (
        event_title(Post(title=None, text=LIFT_WEIBO.text))
        == "翠湖花园3栋的电梯今晚又停了，我妈在里面被关了二十多分钟，打物业电话一直占线 这个月已经是第三次了"
    )
    long = event_title(Post(title=None, text="很" * 100))
    assert len(long) == 60 and long.endswith("…")
    assert event_title(Post(title="锦江苑物业费调价引争议", text="…")) == "锦江苑物业费调价引争议"
    assert building_of("3号楼楼上装修") == "3栋" and building_of("三栋电梯") == "3栋"
    assert building_of("楼上装修") is None


# --- grouping posts into events ------------------------------------------------------------------


def _events(session: Session, demo: Demo) -> list[Event]:
    return list(
        session.scalars(
            select(Event)
            .where(Event.company_id == demo.company_id, Event.kind == EventKind.public)
            .order_by(Event.id)
        )
    )


def test_the_same_story_on_three_platforms_is_one_event_and_other_stories_are_not(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        weibo = place(session, company, FLOWERPOT_WEIBO)
        tieba = place(session, company, FLOWERPOT_TIEBA)
        news = place(session, company, FLOWERPOT_NEWS)
        garage = place(session, company, GARAGE_WEIBO)
        garage_board = place(session, company, GARAGE_LIUYAN)

        assert weibo.created and not tieba.created and not news.created
        flowerpot = weibo.event
        assert tieba.event.id == news.event.id == flowerpot.id
        assert flowerpot.post_count == 3 and flowerpot.community_id == company.communities["cuihu"]
        assert sorted(flowerpot.platforms) == ["rss:xizi-minsheng.example", "tieba", "weibo"]
        assert "已在 3 个平台出现（微博、贴吧、xizi-minsheng.example）" in flowerpot.reasons
        assert "新闻媒体已报道" in flowerpot.reasons
        assert flowerpot.title.startswith("吓出一身冷汗")

        assert garage.created and garage.event.id != flowerpot.id  # the same estate, another story
        assert garage_board.event.id == garage.event.id
        assert sorted(garage.event.platforms) == ["liuyan", "weibo"]
        assert any(r.startswith("涉及财产损失：积水") for r in garage.event.reasons)

        posts = session.scalars(select(Post).where(Post.event_id == flowerpot.id)).all()
        assert all(p.simhash != 0 and p.risk_reasons for p in posts)
        assert len(_events(session, company)) == 2


def test_fee_complaints_of_different_communities_are_different_events(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        jinjiang = [
            place(session, company, s) for s in (JINJIANG_FEE_WEIBO, JINJIANG_FEE_NEWS, JINJIANG_FEE_FORUM)
        ]
        binjiang = place(session, company, BINJIANG_PARKING_FEE)
        cuihu = place(session, company, CUIHU_WATER_FEE)

        assert jinjiang[0].created and {c.event.id for c in jinjiang} == {jinjiang[0].event.id}
        assert jinjiang[0].event.post_count == 3
        assert jinjiang[0].event.community_id == company.communities["jinjiang"]
        assert binjiang.created and cuihu.created
        assert binjiang.event.community_id == company.communities["binjiang"]
        assert cuihu.event.community_id == company.communities["cuihu"]
        assert len({jinjiang[0].event.id, binjiang.event.id, cuihu.event.id}) == 3
        assert any(r.startswith("收费争议：") for r in cuihu.event.reasons)


def test_an_event_is_upgraded_as_posts_with_spread_arrive(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        # The forum thread comes first: a few replies, no likes.
        thread = FLOWERPOT_TIEBA.but(
            text="昨晚十点多，5栋楼下，花盆从高层掉下来，离玩滑板车的孩子不到两米。已经报警了，物业到现在也没人管，太吓人了！",
            published_at=NOW - timedelta(hours=14),
        )
        first = place(session, company, thread)
        assert first.created and first.grade_before is None
        assert first.grade_after in (3, 4), first.event.reasons
        # Then the Weibo post with 2 874 likes, then the news.
        viral = place(session, company, FLOWERPOT_WEIBO.but(published_at=NOW - timedelta(hours=12)))
        assert viral.event.id == first.event.id and not viral.created
        assert viral.upgraded and viral.grade_before == first.grade_after
        assert viral.grade_after is not None and viral.grade_after <= 2
        news = place(session, company, FLOWERPOT_NEWS.but(published_at=NOW - timedelta(hours=2)))
        assert news.event.id == first.event.id
        assert news.grade_after is not None and news.grade_after <= viral.grade_after
        assert news.event.score >= viral.event.score

        timeline = session.scalars(
            select(EventLog).where(EventLog.event_id == first.event.id).order_by(EventLog.id)
        ).all()
        assert timeline[0].kind == "created" and "贴吧" in timeline[0].text
        graded = [e.text for e in timeline if e.kind == "graded"]
        assert graded[0].startswith("定级为")
        assert any(t.startswith("由Ⅲ级（黄）升级为") or t.startswith("由Ⅳ级（蓝）升级为") for t in graded), (
            graded
        )

        # A follow-up a week later reads milder, but does not lower the grade on its own: a person
        # decides when a story is over.
        grade = news.event.grade
        calm = place(
            session,
            company,
            FLOWERPOT_NEWS.but(
                external_id="xizi-community-8799",
                title="翠湖花园5栋花盆坠落后续：阳台堆放物已清理",
                text="翠湖花园5栋花盆坠落一事后续，安居物业已完成各楼栋阳台、窗台堆放物清理，派出所仍在调查。",
                published_at=NOW + timedelta(days=8),
            ),
            now=NOW + timedelta(days=8),
            window_days=10,
        )
        assert calm.event.id == first.event.id and calm.event.grade == grade and not calm.upgraded
        assert any(r.startswith("维持此前定级") for r in calm.event.reasons), (
            news.event.score,
            calm.event.reasons,
        )


def test_a_story_seen_long_ago_starts_a_new_event(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        old = place(
            session,
            company,
            GARAGE_LIUYAN.but(published_at=NOW - timedelta(days=20)),
            now=NOW - timedelta(days=20),
        )
        again = place(session, company, GARAGE_WEIBO)
        assert old.created and again.created and old.event.id != again.event.id


def test_praise_on_several_platforms_is_not_graded(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        first = place(session, company, PRAISE_WEIBO)
        second = place(
            session,
            company,
            PRAISE_WEIBO.but(
                platform="rss:jiangcheng-shequ.example",
                external_id="tag:jiangcheng-shequ.example,2026:5550",
                title="滨江壹号保安背摔倒老人上楼 业主点赞安居物业",
                text="滨江壹号一位老奶奶买菜回来摔了一跤，门岗保安把她扶起来背上了楼，物业管家送去药箱，业主纷纷点赞。",
                source="jiangcheng",
                likes=0,
                comments=0,
                reposts=0,
            ),
        )
        assert second.event.id == first.event.id
        assert second.event.grade is None and not second.upgraded


def test_grade_event_uses_the_worst_post_and_the_whole_story(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        change = place(session, company, LIFT_WEIBO)
        posts = list(session.scalars(select(Post).where(Post.event_id == change.event.id)))
        authorities = {company.sources["weibo"].id: "self_media"}
        alone = grade_event(
            event=change.event, posts=posts, authorities=authorities, now=NOW, policy=RiskPolicy()
        )
        strict = grade_event(
            event=change.event,
            posts=posts,
            authorities=authorities,
            now=NOW,
            policy=RiskPolicy.from_text("99,98,97,96"),
        )
        assert alone.grade == change.event.grade and strict.grade is None
        assert (
            grade_event(event=change.event, posts=[], authorities={}, now=NOW, policy=RiskPolicy()).grade
            is None
        )


def test_posts_arriving_within_hours_show_as_growth(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        change = None
        for i in range(4):
            change = place(
                session,
                company,
                GARAGE_WEIBO.but(
                    external_id=f"garage-{i}",
                    text=f"翠湖花园地下车库B区又积水了，第{i + 1}次反映，车轮都快淹一半，"
                    f"排水泵是不是坏了？@安居物业官方 {'!' * i}",
                    published_at=NOW - timedelta(minutes=30 * (i + 1)),
                ),
            )
        assert change is not None and change.event.post_count == 4
        assert "6 小时内新增 4 条（此前 6 小时 0 条）" in change.event.reasons


# --- internal early warning ----------------------------------------------------------------------

NOISE = (
    "3栋2单元1201楼上装修天天电钻，早上七点就开始，太吵了",
    "我是3号楼的，楼上装修噪音太大，孩子没法睡觉",
    "3栋楼上砸墙的声音太大了，周末也不停",
    "三栋有人装修扰民，中午也在电钻",
    "3栋1单元楼上切割瓷砖噪音很大，能不能管管",
)


def _noise_case(
    session: Session,
    settings: Settings,
    company: Demo,
    text: str,
    *,
    hours_ago: float,
    resident: int | None = None,
) -> None:
    open_case(
        session=session,
        settings=settings,
        company_id=company.company_id,
        community_id=company.communities["cuihu"],
        category=CaseCategory.complaint,
        reason="complaint",
        summary=f"住户：{text}\n助手：已为您转人工客服。",
        resident_id=resident,
        now=NOW - timedelta(hours=hours_ago),
    )


def _internal(session: Session, company: Demo) -> list[Event]:
    return list(
        session.scalars(
            select(Event).where(Event.company_id == company.company_id, Event.kind == EventKind.internal)
        )
    )


def test_a_spike_of_complaints_raises_one_internal_warning_that_grows(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        for i, text in enumerate(NOISE[:3]):
            _noise_case(session, demo, company, text, hours_ago=10 - i)
        [raised] = check_internal_spikes(session=session, company_id=company.company_id, now=NOW)
        event = raised.event
        assert raised.created and event.kind == EventKind.internal and event.topic == "装修噪音"
        assert event.title == "翠湖花园 3栋 装修噪音投诉 24小时内 3 起"
        assert event.community_id == company.communities["cuihu"] and event.platforms == ["internal"]
        assert "24 小时内 3 起装修噪音投诉（此前 24 小时 0 起）" in event.reasons
        assert "集中在 3栋（3 起）" in event.reasons
        assert any("尚未见于网络" in r for r in event.reasons)
        assert raised.grade_after == event.grade and event.grade is not None

        # Checked again with nothing new: nothing to report, nothing doubled.
        assert (
            check_internal_spikes(
                session=session, company_id=company.company_id, now=NOW + timedelta(minutes=10)
            )
            == []
        )

        # Two more, by work order and by case: the same warning grows, re-graded.
        create_work_order(
            session=session,
            company_id=company.company_id,
            community_id=company.communities["cuihu"],
            category=WorkOrderCategory.order,
            description="楼上装修电钻噪音，请秩序维护员上门劝导",
            building="3栋",
            now=NOW - timedelta(hours=1),
        )
        _noise_case(session, demo, company, NOISE[3], hours_ago=0.5)
        [grown] = check_internal_spikes(
            session=session, company_id=company.company_id, now=NOW + timedelta(minutes=20)
        )
        assert not grown.created and grown.event.id == event.id
        assert grown.event.title == "翠湖花园 3栋 装修噪音投诉 24小时内 5 起" and grown.event.post_count == 5
        assert grown.event.score > 0 and "来源：客服案件 4 起、工单 1 起" in grown.event.reasons
        assert len(_internal(session, company)) == 1
        kinds = session.scalars(select(EventLog.kind).where(EventLog.event_id == event.id)).all()
        assert kinds.count("created") == 1


def test_no_warning_below_the_minimum_or_without_growth(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        _noise_case(session, demo, company, NOISE[0], hours_ago=3)
        _noise_case(session, demo, company, NOISE[1], hours_ago=2)
        assert check_internal_spikes(session=session, company_id=company.company_id, now=NOW) == []
        # As many the day before as today is no spike.
        for i, text in enumerate(NOISE[2:5]):
            _noise_case(session, demo, company, text, hours_ago=30 + i)
        _noise_case(session, demo, company, NOISE[4], hours_ago=1)
        assert check_internal_spikes(session=session, company_id=company.company_id, now=NOW) == []
        assert (
            check_internal_spikes(session=session, company_id=company.company_id, now=NOW, min_count=2) == []
        )
        assert _internal(session, company) == []


def test_one_resident_complaining_three_times_is_not_a_spike(demo: Settings) -> None:
    from org.models import Resident

    with get_database(demo).session() as session:
        company = demo_company(session)
        resident = session.scalar(
            select(Resident.id).where(Resident.community_id == company.communities["cuihu"]).limit(1)
        )
        for i, text in enumerate(NOISE[:3]):
            _noise_case(session, demo, company, text, hours_ago=5 - i, resident=resident)
        assert check_internal_spikes(session=session, company_id=company.company_id, now=NOW) == []
        assert (
            check_internal_spikes(session=session, company_id=company.company_id, now=NOW, min_count=1)[
                0
            ].event.post_count
            == 1
        )


# The same three chats handed to a person, their cases summarised in different words: by the
# assistant (住户：…), by an agent in their own words, or with no words at all.
SUMMARIES = (
    "住户：{text}\n助手：如遇电梯困人请立即拨打值班电话，已为您转人工客服。",
    "客服摘要：业主反映楼上装修噪音，助手已提醒电梯困人时拨打值班电话。",
    "已转人工，详见会话记录",
)


def _chat_case(
    session: Session, settings: Settings, company: Demo, text: str, *, summary: str, hours_ago: float
) -> None:
    """A resident's web chat handed to a person: what they wrote (and a parking grumble of the day
    before), the assistant's safety reminder, and the case with ``summary``."""
    opened = NOW - timedelta(hours=hours_ago)
    conversation = Conversation(
        company_id=company.company_id,
        community_id=company.communities["cuihu"],
        channel=Channel.web,
        external_id=f"chat-{uuid.uuid4().hex}",
        created_at=opened - timedelta(hours=30),
        last_message_at=opened,
    )
    session.add(conversation)
    session.flush()
    turns = [
        (Sender.resident, "车位又被人占了，保安也不管", opened - timedelta(hours=30)),
        (Sender.resident, text, opened - timedelta(minutes=3)),
        (Sender.assistant, "如遇电梯困人请拨打值班电话。还有什么需要？", opened - timedelta(minutes=2)),
        (Sender.resident, "我要投诉，转人工", opened - timedelta(minutes=1)),
    ]
    for sender, said, at in turns:
        session.add(Message(conversation_id=conversation.id, sender=sender, text=said, created_at=at))
    session.flush()
    open_case(
        session=session,
        settings=settings,
        company_id=company.company_id,
        community_id=company.communities["cuihu"],
        category=CaseCategory.complaint,
        reason="complaint",
        summary=summary.format(text=text),
        conversation_id=conversation.id,
        now=opened,
    )


@pytest.mark.parametrize("summary", SUMMARIES, ids=["assistant", "agent", "no-words"])
def test_internal_warnings_read_what_residents_wrote_however_the_case_is_summarised(
    demo: Settings, summary: str
) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        for i, text in enumerate(NOISE[:3]):
            _chat_case(session, demo, company, text, summary=summary, hours_ago=10 - i)
        [raised] = check_internal_spikes(session=session, company_id=company.company_id, now=NOW)
        # Only what the residents wrote about these cases: not the assistant's 电梯 reminder, not
        # the parking of the day before, not the agent's summary.
        assert raised.event.topic == "装修噪音"
        assert raised.event.title == "翠湖花园 3栋 装修噪音投诉 24小时内 3 起"
        assert "集中在 3栋（3 起）" in raised.event.reasons
        assert "来源：客服案件 3 起" in raised.event.reasons
        assert [e.topic for e in _internal(session, company)] == ["装修噪音"]
