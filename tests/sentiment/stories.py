"""Test data for opinion monitoring: posts modelled on the saved crawl fixtures (tests/data/crawl,
"now" frozen at 2026-11-23 11:00 +08:00), stored through the real ingest with the demo watchlist,
and residents' complaints for internal warnings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from crawlers.models import Source, SourceAuthority, SourceKind
from org.models import Community, Company
from sentiment.events import EventChange, place_post
from sentiment.model import classify
from sentiment.models import Post
from sentiment.relevance import Watchlist, build_watchlist
from sentiment.risk import RiskPolicy
from sentiment.service import CrawledPost, ingest

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 23, 11, 0, tzinfo=CST)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A China time in November 2026."""
    return datetime(2026, 11, day, hour, minute, tzinfo=CST)


@dataclass(frozen=True)
class Story:
    """One crawled post: where it was found and what it says."""

    platform: str
    external_id: str
    text: str
    title: str | None = None
    published_at: datetime | None = None
    likes: int = 0
    comments: int = 0
    reposts: int = 0
    views: int = 0
    author_followers: int | None = None
    author_verified: bool = False
    source: str = "weibo"  # key of the demo source it came from (see SOURCES)
    community: str | None = None  # a source that watches one community (a Tieba forum)

    def crawled(self) -> CrawledPost:
        return CrawledPost(
            platform=self.platform,
            external_id=self.external_id,
            url=f"https://{self.platform.split(':')[-1]}.example/{self.external_id}",
            text=self.text,
            title=self.title,
            published_at=self.published_at,
            likes=self.likes,
            comments=self.comments,
            reposts=self.reposts,
            views=self.views,
            author_followers=self.author_followers,
            author_verified=self.author_verified,
        )

    def but(self, **changes: Any) -> Story:
        return replace(self, **changes)


# The demo's sources: key → (kind, authority, name).
SOURCES = {
    "weibo": (SourceKind.weibo, SourceAuthority.self_media, "微博搜索：安居物业"),
    "tieba": (SourceKind.tieba, SourceAuthority.forum, "翠湖花园吧"),
    "tousu": (SourceKind.tousu, SourceAuthority.forum, "黑猫投诉：安居物业"),
    "liuyan": (SourceKind.liuyan, SourceAuthority.official, "人民网领导留言板 杭州"),
    "xizi": (SourceKind.rss, SourceAuthority.media, "西子民生网"),
    "jiangcheng": (SourceKind.rss, SourceAuthority.media, "江城社区报"),
    "rongcheng": (SourceKind.generic, SourceAuthority.forum, "蓉城邻里论坛"),
}

# --- the stories of the fixtures -----------------------------------------------------------------

FLOWERPOT_WEIBO = Story(
    "weibo",
    "5241906430091578",
    "吓出一身冷汗！今晚翠湖花园5栋楼下，一个花盆从高层掉下来，砸在离孩子们玩滑板车不到两米的地方。"
    "已经报警，也通知了@安居物业官方。高空抛物是要命的事，请物业尽快调监控、排查阳台堆放，"
    "也请大家管好自家窗台！#高空抛物#",
    published_at=at(22, 22, 41),
    likes=2874,
    comments=356,
    reposts=412,
    author_followers=31000,
    author_verified=True,
)
FLOWERPOT_TIEBA = Story(
    "tieba",
    "10989020311",
    "昨晚十点多，5栋楼下，离玩滑板车的孩子不到两米。已经报警了。",
    title="翠湖花园5栋高空坠物，花盆差点砸到小孩",
    published_at=at(23, 8, 12),
    comments=5,
    source="tieba",
    community="cuihu",
)
FLOWERPOT_NEWS = Story(
    "rss:xizi-minsheng.example",
    "xizi-community-8797",
    "11月22日晚，翠湖花园5栋一花盆从高层坠落，距楼下玩耍的儿童不足两米。辖区派出所已介入调查，"
    "小区物业安居示范物业服务有限公司连夜对各楼栋阳台、窗台堆放物进行排查。",
    title="高空坠物险伤儿童 翠湖花园连夜排查阳台堆放物",
    published_at=at(23, 8, 15),
    source="xizi",
)
GARAGE_WEIBO = Story(
    "weibo",
    "5241464097115538",
    "翠湖花园地下车库B区又积水了，车轮都快淹一半 排水泵是不是坏了？下雨才两个小时就这样，"
    "@安居物业官方 麻烦赶紧派人看看，别等到车泡坏了再来扯皮。",
    published_at=at(21, 19, 40),
    likes=71,
    comments=33,
    reposts=9,
)
GARAGE_LIUYAN = Story(
    "liuyan",
    "31199542",
    "翠湖花园地下车库B区每逢下雨就积水，车辆进出困难，反映给安居物业多次仍未解决，希望协调处理。",
    title="翠湖花园地下车库雨天积水问题",
    published_at=at(21, 10, 5),
    source="liuyan",
    community="cuihu",
)
LIFT_WEIBO = Story(
    "weibo",
    "5241106630221857",
    "#安居物业# 翠湖花园3栋的电梯今晚又停了，我妈在里面被关了二十多分钟，打物业电话一直占线 "
    "这个月已经是第三次了！@安居物业官方 你们到底有没有定期维保？老人小孩天天坐，出了事谁负责？杭州·翠湖花园",
    published_at=at(20, 21, 47),
    likes=214,
    comments=86,
    reposts=37,
)
GROUP_WEIBO = Story(
    "weibo",
    "5242035817364420",
    "翠湖花园业主群里已经有两百多人签名了，电梯、车库积水、物业费账目，准备周三一起去街道反映。"
    "不是想闹事，是真的沟通了太多次没结果。@安居物业官方 希望你们能主动出来开个业主见面会。",
    published_at=at(23, 9, 10),
    likes=433,
    comments=97,
    reposts=58,
)
WATER_NOTICE = Story(
    "weibo",
    "5241268934530771",
    "【停水通知】#锦江苑# 各位业主：因市政供水管网改造，锦江苑1-4栋将于11月22日（周日）9:00-17:00暂停供水，"
    "请提前储水。如遇特殊困难请联系管理处 028-6600-5678，我们会安排送水上门。给大家带来不便，敬请谅解！"
    "——安居物业",
    published_at=at(21, 8, 30),
    likes=31,
    comments=9,
    reposts=12,
    author_followers=18000,
    author_verified=True,
)
PRAISE_WEIBO = Story(
    "weibo",
    "5241293018825734",
    "今早在滨江壹号小区门口，一位老奶奶买菜回来摔了一跤，门岗的保安大哥二话不说把她扶起来还背上了楼，"
    "后来物业管家也送了药箱过去 给滨江壹号的保安和@安居物业官方点个赞，这才叫服务！",
    published_at=at(21, 10, 5),
    likes=158,
    comments=14,
    reposts=5,
)
QUESTION_WEIBO = Story(
    "weibo",
    "5241490261378802",
    "准备买西湖区翠湖花园的二手房，有住在里面的朋友吗？物业费多少钱一平？物业管理怎么样？停车方便吗？",
    published_at=at(21, 20, 45),
    likes=2,
    comments=11,
)
GATE_WEIBO = Story(
    "weibo",
    "5241812975663104",
    "锦江苑东门的人脸识别门禁坏了三天了，每次都要等保安开门，拎着快递排队 物业说配件在路上，行吧，"
    "希望这周能修好。@安居物业官方",
    published_at=at(22, 16, 3),
    likes=40,
    comments=8,
    reposts=1,
)
JINJIANG_FEE_WEIBO = Story(
    "weibo",
    "5241322145773208",
    "#锦江苑物业费# 说几句心里话。锦江苑是老小区了，物业从2019年换成@安居物业官方，刚来那两年确实比以前好，"
    "绿化、保洁都上了一个台阶。但是今年10月贴出来的通知说物业费要从每平米1.8元涨到2.3元，业主大会根本没开，"
    "就在单元门口贴了张纸，问管家，管家说是“按合同调整”。我想问三件事：第一，合同哪一条写了可以单方面调价？"
    "第二，小区的公共收益（电梯广告、临时停车费）这几年收了多少、用在哪了，从来没有公示过；第三，地下车库的照明"
    "坏了半年没人修。已经在业主群里发起联名，要求物业在12月前公布近三年公共收益账目、召开业主大会讨论调价方案。",
    published_at=at(21, 12, 18),
    likes=527,
    comments=203,
    reposts=64,
)
JINJIANG_FEE_NEWS = Story(
    "rss:jiangcheng-shequ.example",
    "tag:jiangcheng-shequ.example,2026:5508",
    "锦江苑部分业主对物业费由每平米1.8元调至2.3元提出异议，要求先公开公共收益账目并召开业主大会。"
    "物业方面（安居物业）回应称将于12月上旬组织业主座谈会。",
    title="锦江苑物业费调价引争议 业主要求召开业主大会",
    published_at=at(21, 15, 10),
    source="jiangcheng",
)
JINJIANG_FEE_FORUM = Story(
    "web:rongcheng.example",
    "thread-88321",
    "锦江苑物业费从1.8涨到2.3，单元门口贴张通知就算数了？业主大会都没开。我已经在业主群发起联名，"
    "要求安居物业先公开公共收益账目。交了的邻居说说你们怎么想的。",
    title="锦江苑物业费涨价，大家交了没？",
    published_at=at(21, 12, 40),
    source="rongcheng",
)
BINJIANG_PARKING_FEE = Story(
    "tousu",
    "17402350017",
    "武汉滨江壹号地下车位已经交了年度管理费，物业系统又扣了一次月费，联系客服后答应退款但一直没到账。",
    title="滨江壹号车位管理费重复收取",
    published_at=at(22, 9, 3),
    source="tousu",
)
CUIHU_WATER_FEE = Story(
    "tousu",
    "17402296615",
    "杭州翠湖花园，安居物业今年起每月在物业费之外另收“二次供水加压费”30元，合同里没有这一项，"
    "问管家说是公司统一规定，要求出示收费依据不给。",
    title="安居物业翠湖花园多收二次供水加压费",
    published_at=at(21, 8, 34),
    source="tousu",
)


# --- the demo company in the database ------------------------------------------------------------


@dataclass(frozen=True)
class DemoSource:
    id: int
    authority: str  # crawlers.models.SourceAuthority


@dataclass
class Demo:
    company_id: int
    communities: dict[str, int]  # code → id
    sources: dict[str, DemoSource]
    watchlist: Watchlist


def demo_company(session: Session) -> Demo:
    """The seeded demo company, its communities by code, and one source per platform.

    Sources are written with the columns every migration has (the model may be ahead of them)."""
    company = session.scalars(select(Company).where(Company.code == "anju-demo")).one()
    communities = {
        c.code: c.id for c in session.scalars(select(Community).where(Community.company_id == company.id))
    }
    table = Source.__table__
    sources = {}
    for key, (kind, authority, name) in SOURCES.items():
        source_id = session.scalar(
            select(Source.id).where(Source.company_id == company.id, Source.key == key)
        )
        if source_id is None:
            source_id = session.execute(
                insert(table)
                .values(
                    company_id=company.id,
                    key=key,
                    name=name,
                    kind=kind.name,
                    authority=authority.name,
                    url=f"https://{key}.example/",
                    config={},
                    enabled=True,
                    interval_minutes=30,
                    created_at=NOW,
                )
                .returning(table.c.id)
            ).scalar_one()
        sources[key] = DemoSource(source_id, str(authority))
    return Demo(company.id, communities, sources, build_watchlist(session=session, company_id=company.id))


def store(session: Session, demo: Demo, story: Story) -> Post:
    """The story as the crawlers would store it (the real ingest: relevance, sentiment)."""
    source = demo.sources[story.source]
    outcome = ingest(
        session=session,
        company_id=demo.company_id,
        source_id=source.id,
        crawled=story.crawled(),
        watchlist=demo.watchlist,
        scope_community_id=demo.communities[story.community] if story.community else None,
    )
    assert outcome.post is not None, f"{story.external_id} was not stored: {outcome.why}"
    return outcome.post


def place(
    session: Session,
    demo: Demo,
    story: Story,
    *,
    now: datetime = NOW,
    policy: RiskPolicy | None = None,
    window_days: int = 7,
) -> EventChange:
    """Store the story and place it in its event, as the pipeline does for every stored post."""
    post = store(session, demo, story)
    return place_post(
        session=session,
        post=post,
        authority=demo.sources[story.source].authority,
        source_authorities={source.id: source.authority for source in demo.sources.values()},
        now=now,
        policy=policy or RiskPolicy(),
        window_days=window_days,
    )


def unsaved_post(story: Story, *, matched: tuple[str, ...] = ("安居物业", "翠湖花园")) -> Post:
    """A post as ingest would build it, without a database (for grading alone)."""
    whole = f"{story.title or ''}\n{story.text}"
    sentiment = classify(whole)
    return Post(
        company_id=1,
        platform=story.platform,
        external_id=story.external_id,
        url="https://example.invalid/",
        title=story.title,
        text=story.text,
        author_followers=story.author_followers,
        author_verified=story.author_verified,
        published_at=story.published_at,
        crawled_at=NOW,
        likes=story.likes,
        comments=story.comments,
        reposts=story.reposts,
        views=story.views,
        content_hash="",
        matched=list(matched),
        sentiment=sentiment.label,
        sentiment_score=sentiment.score,
        sentiment_reasons={
            "negative": sentiment.negative_words,
            "positive": sentiment.positive_words,
            "cues": sentiment.cues,
        },
    )
