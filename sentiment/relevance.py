"""Is a post about us? The watchlist: the company's names, its communities' names, cities and
addresses, and the terms staff add (WatchTerm).

A company name is enough (安居物业, 安居示范物业). A community's name is not: there is a 翠湖花园
in many cities, so it counts only beside its own city or address, the company's name, or in a
source that watches that community (a forum of that estate, the city's news). Another city right
before the name (南宁翠湖花园) or another property company without ours points elsewhere. "安居"
alone never counts (安居乐业, 保障性安居工程).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from org.models import Community, Company
from sentiment.lexicon import words
from sentiment.models import WatchKind, WatchTerm

THRESHOLD = 0.8
COMPANY_SUFFIXES = (
    "服务有限公司",
    "管理有限公司",
    "有限责任公司",
    "股份有限公司",
    "有限公司",
    "集团",
    "公司",
)
# A property company named in the text: two to six characters then 物业 (鸿景物业, 万家物业服务).
_OTHER_COMPANY = re.compile(r"([\u4e00-\u9fff]{2,6})物业")
CITIES = words(
    """
    北京 上海 天津 重庆 广州 深圳 杭州 南京 苏州 武汉 成都 西安 长沙 郑州 济南 青岛
    合肥 福州 厦门 南昌 南宁 昆明 贵阳 海口 三亚 石家庄 太原 沈阳 大连 长春 哈尔滨 呼和浩特
    兰州 银川 西宁 乌鲁木齐 拉萨 宁波 温州 无锡 常州 佛山 东莞 珠海 惠州 中山 泉州 烟台
    潍坊 徐州 绍兴 嘉兴 金华 台州 扬州 南通 洛阳 宜昌 襄阳 绵阳 柳州 桂林
    """
)


COMMON_WORD_FREQ = 200  # a word this common before 物业 is speech (要求物业, 联系物业), not a name
_NOT_A_NAME = frozenset(words("小区 社区 园区 大厦 前期 原来 现在 新的 这家 那家 我们 他们 本 该 原 新 老"))


def other_companies(text: str) -> set[str]:
    """Names of property companies in the text (鸿景物业 → 鸿景): the word right before 物业, when
    it is a name and not an ordinary word (要求物业, 找物业, 小区物业)."""
    import jieba

    found = set()
    for match in _OTHER_COMPANY.finditer(text):
        tokens = [t for t in jieba.lcut(match.group(1)) if t.strip()]  # HMM on: names are new words
        if not tokens:
            continue
        last = tokens[-1]
        if last in _NOT_A_NAME or jieba.dt.FREQ.get(last, 0) > COMMON_WORD_FREQ:
            continue
        found.add(last)
    return found


@dataclass
class Place:
    community_id: int
    names: list[str]  # the community's name and aliases
    anchors: list[str]  # its city, district, road and address terms


@dataclass
class Watchlist:
    company_terms: list[str]
    places: list[Place]

    def company_names(self) -> set[str]:
        return {t.removesuffix("物业") for t in self.company_terms if t.endswith("物业")}


@dataclass
class Relevance:
    relevant: bool
    score: float
    community_id: int | None
    matched: list[str] = field(default_factory=list)  # shown to PR staff: why we kept it


def short_names(name: str) -> list[str]:
    """安居示范物业服务有限公司 → 安居示范物业服务有限公司, 安居示范物业, 安居物业."""
    names = [name]
    core = name
    for suffix in COMPANY_SUFFIXES:
        core = core.removesuffix(suffix)
    core = core.removesuffix("服务")
    if core != name:
        names.append(core)
    if core.endswith("物业") and len(core) > 4:
        names.append(core[:2] + "物业")  # the name people use: 安居物业
    return list(dict.fromkeys(n for n in names if len(n) >= 4))


def build_watchlist(*, session: Session, company_id: int) -> Watchlist:
    company = session.get(Company, company_id)
    if company is None:
        raise ValueError(f"company {company_id} does not exist")
    terms = short_names(company.name)
    places: dict[int, Place] = {}
    for community in session.scalars(select(Community).where(Community.company_id == company_id)):
        anchors = [community.city] if community.city else []
        if community.address:
            road = re.search(r"([\u4e00-\u9fff]{2,8}(?:路|街|大道|道))", community.address)
            district = re.search(r"([\u4e00-\u9fff]{1,4}区)", community.address)
            anchors += [m.group(1) for m in (road, district) if m]
        places[community.id] = Place(community.id, [community.name], [a for a in anchors if a])
    for row in session.scalars(select(WatchTerm).where(WatchTerm.company_id == company_id)):
        if row.kind is WatchKind.company or row.community_id is None:
            terms.append(row.term)
        elif row.community_id in places:
            place = places[row.community_id]
            (place.names if row.kind is WatchKind.community else place.anchors).append(row.term)
    return Watchlist(list(dict.fromkeys(terms)), list(places.values()))


def judge(
    text: str, watchlist: Watchlist, *, scope_community_id: int | None = None, scope_city: str | None = None
) -> Relevance:
    """How sure we are that ``text`` is about the company (``scope_*``: what the source watches)."""
    matched = [t for t in watchlist.company_terms if t in text]
    score = 1.0 if matched else 0.0
    ours = watchlist.company_names()
    place_names = [n for place in watchlist.places for n in place.names]
    others = {
        m
        for m in other_companies(text)
        if not any(m.endswith(o) or o.endswith(m) for o in ours)
        and not any(n in m for n in place_names)  # 锦江苑物业: our community's 物业 is us
    }
    best: tuple[float, int | None] = (0.0, None)
    matched_here: list[str] = []
    for place in watchlist.places:
        names = [n for n in place.names if n in text]
        if not names:
            continue
        place_score = 0.5
        anchors = [a for a in place.anchors if a in text]
        if anchors or (scope_city and scope_city in place.anchors):
            place_score += 0.4
        if scope_community_id == place.community_id:
            place_score += 0.4
        if matched:
            place_score += 0.4
        elsewhere = [
            c
            for c in CITIES
            if c not in place.anchors and any(f"{c}{n}" in text or f"{c}市{n}" in text for n in names)
        ]
        if elsewhere:
            place_score -= 0.8
        if others and not matched:
            place_score -= 0.5
        if place_score > best[0]:
            best = (place_score, place.community_id)
            matched_here = names + anchors
    if best[1] is not None:
        matched += matched_here
    score = round(min(max(score, best[0]), 1.0), 2)
    return Relevance(score >= THRESHOLD, score, best[1], list(dict.fromkeys(matched)))
