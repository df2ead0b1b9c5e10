"""Risk grades Ⅰ–Ⅳ (红 / 橙 / 黄 / 蓝) for posts and events, with the reasons a PR officer reads.

A post's score (0–100) adds up what makes a story dangerous for the company:
- negativity: how negative the post is (sentiment.model's P(pos) - P(neg));
- severity: what it is about — deaths and injuries, fire, gas, lifts, falling objects, flooding,
  crime, group incidents, petitions and 12345, media exposure, legal action, fees (SEVERITY);
- spread: likes, comments, reposts and views, the author's followers, and how fast they came;
- authority: official media and government boards weigh more than news sites, news sites more
  than self-media, self-media more than forums;
- recency: a post of this morning matters more than one of last week.

The tone decides how much of that counts: a notice (停水通知) or praise that mentions a lift and
has thousands of likes is not a risk; a post that only vaguely concerns us counts a little less.
An event takes its worst post, re-graded now, and adds what only the whole story shows: several
platforms, volume, growth in the last hours, the engagement of all its posts together.

The grade comes from the score through thresholds an operator sets (``RiskPolicy.from_text``,
default 80/60/40/20); below Ⅳ a post or event is not graded.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sentiment.models import Event, Post

GRADE_NAMES = {1: "Ⅰ级（红）", 2: "Ⅱ级（橙）", 3: "Ⅲ级（黄）", 4: "Ⅳ级（蓝）"}


def grade_label(grade: int | None) -> str:
    """``Ⅱ级（橙）``; ``未定级`` below Ⅳ."""
    return GRADE_NAMES.get(grade, "未定级") if grade is not None else "未定级"


@dataclass(frozen=True)
class RiskPolicy:
    """How a score is made and where the grades start. Every number is a default an operator
    may change; the reason for each is beside it."""

    # Scores at which Ⅰ, Ⅱ, Ⅲ and Ⅳ start, highest first. 80/60/40/20 splits the 0–100 score in
    # even steps; calibrated so that a negative post about a safety incident with real spread
    # reaches Ⅱ, an ordinary complaint with little spread Ⅲ/Ⅳ, a notice or a question nothing.
    thresholds: tuple[float, float, float, float] = (80.0, 60.0, 40.0, 20.0)
    # Negativity: points at P(pos) - P(neg) = -1. Less than severity can give: the model is sure of
    # most complaints (-0.9 and below), so anger alone must not lift a parking grumble to Ⅱ.
    negativity: float = 20.0
    # Severity: the worst category counts in full, every further one at half (a post naming lift,
    # fire and 12345 is worse than one naming the lift, but not three times worse), up to the cap.
    severity_cap: float = 45.0
    severity_further: float = 0.5
    # Spread: points per tenfold engagement (likes + 2×comments + 3×reposts + views/100: a repost
    # carries the story further than a like). 6 points a decade reaches the cap at ~2 000.
    spread_per_decade: float = 6.0
    spread_cap: float = 20.0
    # The author's reach: 10 000 followers and 100 000 followers (big V) add these points.
    followers_points: tuple[float, float] = (2.0, 4.0)
    # Velocity: engagement per hour since publication that shows a post is taking off right now.
    fast_per_hour: float = 100.0
    fast_points: float = 4.0
    # Authority of the source (official, media, self_media, forum): official media and government
    # boards are read by the authorities themselves; news sites get reprinted; self-media and
    # forums less so.
    official_points: float = 10.0
    media_points: float = 6.0
    self_media_points: float = 3.0
    forum_points: float = 0.0
    verified_points: float = 2.0  # a verified account on a self-media platform or forum
    # Recency: within 6 hours (the working day it happened), within a day, within three days.
    recency_points: tuple[tuple[int, float], ...] = ((6, 8.0), (24, 5.0), (72, 2.0))
    stale_days: int = 7  # older than a week: most of the damage is done or the story has moved on
    stale_factor: float = 0.7
    # Tone: what part of the score counts when the post is not negative. A neutral post about a
    # fire still matters (news reports are neutral); a notice or praise hardly does.
    neutral_factor: float = 0.7
    notice_factor: float = 0.25
    positive_factor: float = 0.2
    # Relevance: a post that matched a single name (a community's name in its own forum) is less
    # surely about us than one that names the company and the community.
    weak_relevance_factor: float = 0.85
    # Events: each platform beyond the first (the story is crossing over), volume (per doubling of
    # posts), growth in the last hours against the hours before, and the engagement of all posts.
    platform_points: float = 5.0
    platform_cap: float = 15.0
    volume_per_doubling: float = 4.0
    volume_cap: float = 10.0
    growth_hours: int = 6  # a dozen crawls (every 30 minutes): long enough to see a story gather pace
    growth_min_posts: int = 3  # fewer new posts than this in the window is not a trend
    growth_points_per_post: float = 2.0
    growth_cap: float = 10.0
    # Bonuses of an event with no negative post at all count this much (praise on three platforms
    # is not a crisis).
    calm_event_factor: float = 0.3

    def __post_init__(self) -> None:
        _check_thresholds(self.thresholds, repr(self.thresholds))

    @classmethod
    def from_text(cls, text: str) -> RiskPolicy:
        """An operator's setting: four scores for Ⅰ, Ⅱ, Ⅲ and Ⅳ, highest first ("80,60,40,20")."""
        parts = [p for p in re.split(r"[\s,，;；/]+", (text or "").strip()) if p]
        if len(parts) != 4:
            raise ValueError(
                f"risk thresholds {text!r}: expected 4 numbers for grades Ⅰ, Ⅱ, Ⅲ and Ⅳ, highest first, "
                "e.g. 80,60,40,20"
            )
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"risk thresholds {text!r}: {', '.join(parts)} are not all numbers; e.g. 80,60,40,20"
            ) from None
        return cls(thresholds=(values[0], values[1], values[2], values[3]))

    def grade_of(self, score: float) -> int | None:
        for grade, threshold in enumerate(self.thresholds, start=1):
            if score >= threshold:
                return grade
        return None

    def authority_points(self, authority: str) -> float:
        return {
            "official": self.official_points,
            "media": self.media_points,
            "self_media": self.self_media_points,
            "forum": self.forum_points,
        }.get(authority, self.forum_points)


def _check_thresholds(values: Sequence[float], shown: str) -> None:
    if len(values) != 4:
        raise ValueError(f"risk thresholds {shown}: expected 4 numbers for grades Ⅰ, Ⅱ, Ⅲ and Ⅳ")
    if not all(math.isfinite(v) and 0 <= v <= 100 for v in values):
        raise ValueError(f"risk thresholds {shown}: scores run from 0 to 100")
    if not all(a > b for a, b in itertools.pairwise(values)):
        raise ValueError(
            f"risk thresholds {shown}: must be strictly decreasing (Ⅰ needs the highest score), "
            "e.g. 80,60,40,20"
        )


# --- severity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeverityCategory:
    name: str  # 人身伤亡, 火灾…
    weight: float  # points when it is the worst category of a post
    reason: str  # the line a PR officer reads, before the matched terms
    # (term shown, pattern); a pattern of None matches the term itself.
    terms: tuple[tuple[str, str | None], ...]


SAFETY = "涉及人身安全"
# The order is the order of the reasons. Weights: threats to life first (the emergency categories
# of the service standard), then what makes a local complaint a public one (groups, petitions,
# media, lawyers), then money, the commonest and mildest.
SEVERITY: tuple[SeverityCategory, ...] = (
    SeverityCategory(
        "人身伤亡",
        35.0,
        SAFETY,
        (
            ("死亡", r"死亡|身亡|遇难|丧生|致死"),
            ("伤亡", None),
            ("受伤", r"受伤|砸伤|摔伤|烧伤|重伤|骨折"),
            ("送医", r"送医|送往医院|抢救|120急救"),
        ),
    ),
    SeverityCategory(
        "火灾", 30.0, SAFETY, (("起火", r"着火|起火|失火|火情|烧毁"), ("火灾", None), ("冒烟", None))
    ),
    SeverityCategory(
        "燃气",
        30.0,
        SAFETY,
        (
            ("燃气泄漏", r"(?:燃气|煤气|天然气)泄漏|漏气"),
            ("煤气味", r"(?:煤气|燃气)味"),
            ("爆燃", r"爆燃|爆炸"),
        ),
    ),
    SeverityCategory(
        "电梯",
        20.0,
        SAFETY,
        (
            ("电梯困人", r"电梯困人|困人|被困电梯|困在电梯|电梯里.{0,8}(?:被关|关了|困)|关在(?:电梯)?里"),
            ("电梯坠落", r"电梯(?:坠落|下坠|溜梯|冲顶)"),
            ("电梯故障", r"电梯.{0,8}(?:故障|停运|坏了|又停了|又坏|夹人)"),
        ),
    ),
    SeverityCategory(
        "高空坠物",
        20.0,
        SAFETY,
        (("高空坠物", r"高空坠物|高空抛物|坠物|从高[层楼处].{0,6}(?:掉|坠|砸)|花盆.{0,8}(?:掉|坠|砸)"),),
    ),
    SeverityCategory("水浸", 10.0, "涉及财产损失", (("积水", r"积水|水浸|倒灌|被淹|淹了|淹一半|泡水|泡坏"),)),
    SeverityCategory(
        "治安", 12.0, "涉及治安", (("被盗", r"被盗|失窃|盗窃|入室"), ("打人", r"打人|殴打|斗殴|持刀"))
    ),
    SeverityCategory(
        "群体事件",
        20.0,
        "群体性事件迹象",
        (
            ("拉横幅", r"拉横幅|横幅"),
            ("聚集", r"聚集|静坐|游行|堵门|堵路"),
            ("集体上访", r"集体上访|集体投诉"),
            ("联名", r"联名|签名"),
            ("业主维权", None),
            ("数百名业主", r"[两二三四五六七八九几数\d]百(?:多|余)?(?:名|位|户|人)"),
            ("一起去街道", r"一起去(?:街道|社区|政府|住建|信访)"),
        ),
    ),
    SeverityCategory(
        "信访与热线",
        12.0,
        "已向政府部门或热线反映",
        (
            ("12345", r"12345"),
            ("信访", r"信访|上访"),
            ("市长热线", None),
            ("留言板", None),
            (
                "投诉到",
                r"投诉到|(?:向|找).{0,6}(?:住建|街道|城管|市场监管|居委会|政府).{0,4}(?:投诉|反映|举报)",
            ),
        ),
    ),
    SeverityCategory(
        "媒体曝光",
        12.0,
        "媒体关注",
        (("记者", None), ("曝光", None), ("媒体", None), ("电视台", None), ("央视", None), ("报道", None)),
    ),
    SeverityCategory(
        "维权",
        10.0,
        "维权或法律行动",
        (("维权", None), ("起诉", r"起诉|诉讼|仲裁|法院"), ("律师函", None), ("律师", r"律师(?!函)")),
    ),
    SeverityCategory(
        "收费",
        8.0,
        "收费争议",
        (
            ("乱收费", r"乱收费|乱收|多收|多扣|重复收取|重复扣费|另收"),
            ("霸王条款", None),
            ("公共收益", None),
            ("涨价", r"涨价|调价|涨到|上涨"),
            ("押金不退", r"押金.{0,8}不退|不退.{0,6}押金"),
        ),
    ),
)
_NEGATED = re.compile(r"(?:无|未|没有|没|并非|不是|暂无|未造成)[^，。！？,.!?]{0,3}$")


def _compile(pattern: str | None, term: str) -> re.Pattern[str]:
    return re.compile(pattern or re.escape(term))


_SEVERITY_PATTERNS: tuple[tuple[SeverityCategory, tuple[tuple[str, re.Pattern[str]], ...]], ...] = tuple(
    (c, tuple((term, _compile(pattern, term)) for term, pattern in c.terms)) for c in SEVERITY
)


def severity_terms(text: str) -> dict[str, list[str]]:
    """The severity categories a text touches and the terms behind each (未造成人员伤亡 does not
    count as 伤亡)."""
    found: dict[str, list[str]] = {}
    for category, patterns in _SEVERITY_PATTERNS:
        for term, pattern in patterns:
            for match in pattern.finditer(text):
                if not _NEGATED.search(text[max(0, match.start() - 6) : match.start()]):
                    found.setdefault(category.name, [])
                    if term not in found[category.name]:
                        found[category.name].append(term)
                    break
    return found


def _severity_points(found: dict[str, list[str]], policy: RiskPolicy) -> float:
    weights = sorted((c.weight for c in SEVERITY if c.name in found), reverse=True)
    points = sum(w * (1.0 if i == 0 else policy.severity_further) for i, w in enumerate(weights))
    return min(points, policy.severity_cap)


def _severity_reasons(found: dict[str, list[str]]) -> list[str]:
    """One line per kind of reason: 涉及人身安全：电梯困人、高空坠物; 群体性事件迹象：拉横幅、联名."""
    lines: dict[str, list[str]] = {}
    for category in SEVERITY:
        if category.name not in found:
            continue
        if category.reason != SAFETY:
            terms = found[category.name]
        elif category.name == "电梯":
            terms = found[category.name][:1]  # 电梯困人 says more than 电梯
        else:
            terms = [category.name]
        shown = lines.setdefault(category.reason, [])
        shown.extend(t for t in terms if t not in shown)
    return [f"{reason}：{'、'.join(terms)}" for reason, terms in lines.items()]


# --- posts -------------------------------------------------------------------------------------


@dataclass
class Risk:
    grade: int | None  # 1..4 (Ⅰ 红 … Ⅳ 蓝), None below Ⅳ
    score: float  # 0–100
    reasons: list[str] = field(default_factory=list)  # Chinese, for PR staff, most important first
    severity: dict[str, list[str]] = field(default_factory=dict)  # category → matched terms

    @property
    def label(self) -> str:
        return grade_label(self.grade)


def engagement(post: Post) -> float:
    """Weighted interactions: a repost carries the story further than a comment, a comment further
    than a like; a hundred views count as one like."""
    return (post.likes or 0) + 2 * (post.comments or 0) + 3 * (post.reposts or 0) + (post.views or 0) / 100


def spread_points(value: float, policy: RiskPolicy) -> float:
    return min(policy.spread_per_decade * math.log10(1 + max(value, 0.0)), policy.spread_cap)


def _count(n: int) -> str:
    return f"{n / 10000:.1f} 万".replace(".0 万", " 万") if n >= 10000 else str(n)


def interactions(*, likes: int, comments: int, reposts: int, views: int) -> str:
    """点赞 2874、评论 356、转发 412 (what is zero is left out)."""
    counts = (("点赞", likes), ("评论", comments), ("转发", reposts), ("阅读", views))
    return "、".join(f"{name} {_count(n)}" for name, n in counts if n) or "暂无互动"


def post_time(post: Post) -> datetime:
    return post.published_at or post.crawled_at


_AUTHORITY_REASONS = {
    "official": "官方媒体/政府平台发布",
    "media": "新闻媒体报道",
    "self_media": "自媒体发布",
    "forum": "论坛/投诉平台发帖",
}


def _age_reason(hours: float, policy: RiskPolicy) -> tuple[float, str | None]:
    for limit, points in policy.recency_points:
        if hours <= limit:
            return points, f"{limit} 小时内发布" if limit < 48 else f"{limit // 24} 天内发布"
    return 0.0, None


# Severity categories that say who is watching or where a complaint went, not what happened.
_NOT_AN_EVENT = frozenset({"媒体曝光", "信访与热线"})


def grade_post(*, post: Post, authority: str, now: datetime, policy: RiskPolicy) -> Risk:
    """The post's risk as of ``now``: grade, score and the reasons, most important first."""
    reasons: list[str] = []
    sentiment = post.sentiment or "neu"
    score_value = float(post.sentiment_score or 0.0)
    why = post.sentiment_reasons or {}
    cues: list[str] = list(why.get("cues") or [])

    found = severity_terms(f"{post.title or ''}\n{post.text or ''}")
    # Tone
    negativity = 0.0
    if sentiment == "neg":
        negativity = policy.negativity * max(0.0, -score_value)
        strength = "负面情绪明显" if score_value <= -0.6 else "负面情绪"
        reasons.append(f"{strength}（{score_value:.2f}）")
        words = [w for w in why.get("negative") or [] if w][:4]
        if words:
            reasons.append(f"负面用词：{'、'.join(words)}")
        if "反讽" in cues:
            reasons.append("反讽语气")
        factor = 1.0
    elif sentiment == "pos":
        factor = policy.positive_factor
        reasons.append(f"正面评价（+{abs(score_value):.2f}），风险调低")
    elif (
        set(found) - _NOT_AN_EVENT and authority in ("media", "official") and not {"通知", "答复"} & set(cues)
    ):
        # Sentiment is the writer's attitude: a reporter tells of a child nearly hit by a flowerpot
        # in a flat voice. The story harms the company's name all the same.
        factor = 1.0
        reasons.append("媒体报道涉事（语气中性，按事件计）")
    elif "通知" in cues:
        factor = policy.notice_factor
        reasons.append("通知/公告类内容，风险调低")
    else:
        factor = policy.neutral_factor
        reasons.append("咨询提问，风险调低" if "提问" in cues else "情绪中性")

    # Severity
    severity = _severity_points(found, policy)
    reasons.extend(_severity_reasons(found))

    # Spread
    value = engagement(post)
    spread = spread_points(value, policy)
    counts = interactions(likes=post.likes, comments=post.comments, reposts=post.reposts, views=post.views)
    if value >= 500:
        reasons.append(f"传播较广：{counts}")
    elif value >= 50:
        reasons.append(f"有一定传播：{counts}")
    followers = post.author_followers or 0
    low, high = policy.followers_points
    if followers >= 100_000:
        spread += high
        reasons.append(f"作者粉丝 {_count(followers)}（大V）")
    elif followers >= 10_000:
        spread += low
        reasons.append(f"作者粉丝 {_count(followers)}")
    hours = max((now - post_time(post)).total_seconds() / 3600, 0.0)
    rate = value / max(hours, 1.0)
    if hours <= 24 and rate >= policy.fast_per_hour:
        spread += policy.fast_points
        reasons.append(f"互动增长快：约每小时 {int(rate)} 次")

    # Authority
    source = policy.authority_points(authority)
    if authority in _AUTHORITY_REASONS:
        reasons.append(_AUTHORITY_REASONS[authority])
    if post.author_verified and authority in ("self_media", "forum"):
        source += policy.verified_points
        reasons.append("认证账号发布")

    # Recency
    recency, age = _age_reason(hours, policy)
    if age:
        reasons.append(age)

    total = (negativity + severity + spread + source + recency) * factor
    if len(post.matched or []) < 2:
        total *= policy.weak_relevance_factor
    if post.matched:
        reasons.append(f"提及：{'、'.join(post.matched[:4])}")
    if hours > policy.stale_days * 24:
        total *= policy.stale_factor
        reasons.append(f"发布已超过 {policy.stale_days} 天")
    total = round(min(max(total, 0.0), 100.0), 1)
    return Risk(grade=policy.grade_of(total), score=total, reasons=reasons, severity=found)


# --- events ------------------------------------------------------------------------------------

PLATFORM_NAMES = {
    "weibo": "微博",
    "tieba": "贴吧",
    "tousu": "黑猫投诉",
    "liuyan": "领导留言板",
    "wechat": "微信公众号",
    "douyin": "抖音",
    "internal": "内部投诉",
}


def platform_name(platform: str) -> str:
    """微博, 贴吧…; a feed or site by its host (rss:news.example → news.example)."""
    if platform in PLATFORM_NAMES:
        return PLATFORM_NAMES[platform]
    _, _, host = platform.partition(":")
    return host or platform


def _sum(posts: Iterable[Post], name: str) -> int:
    return sum(getattr(p, name) or 0 for p in posts)


def grade_event(
    *,
    event: Event,
    posts: list[Post],
    authorities: dict[int | None, str],
    now: datetime,
    policy: RiskPolicy,
) -> Risk:
    """The event's risk as of ``now``: its worst post re-graded now, plus what the whole story shows.

    ``posts`` may be all of the event's posts or a bounded sample (its worst and its latest): the
    counts come from the event (post_count, platforms) where they are larger.
    """
    if not posts:
        return Risk(grade=None, score=0.0, reasons=[])
    graded = [
        (grade_post(post=p, authority=authorities.get(p.source_id, "forum"), now=now, policy=policy), p)
        for p in posts
    ]
    worst, worst_post = max(graded, key=lambda pair: pair[0].score)
    negative = any(p.sentiment == "neg" for p in posts) or (event.negative_count or 0) > 0
    calm = 1.0 if negative else policy.calm_event_factor
    reasons: list[str] = []
    bonus = 0.0

    platforms = list(dict.fromkeys([*(event.platforms or []), *(p.platform for p in posts)]))
    if len(platforms) > 1:
        bonus += min(policy.platform_points * (len(platforms) - 1), policy.platform_cap)
        names = "、".join(dict.fromkeys(platform_name(p) for p in platforms))
        reasons.append(f"已在 {len(platforms)} 个平台出现（{names}）")

    count = max(event.post_count or 0, len(posts))
    if count > 1:
        bonus += min(policy.volume_per_doubling * math.log2(count), policy.volume_cap)
        negatives = max(event.negative_count or 0, sum(p.sentiment == "neg" for p in posts))
        reasons.append(f"共 {count} 条相关内容，其中负面 {negatives} 条")

    window = timedelta(hours=policy.growth_hours)
    recent = [p for p in posts if now - window <= post_time(p) <= now + timedelta(minutes=5)]
    before = [p for p in posts if now - 2 * window <= post_time(p) < now - window]
    if len(recent) >= policy.growth_min_posts and len(recent) > len(before):
        bonus += min(policy.growth_points_per_post * (len(recent) - len(before)), policy.growth_cap)
        hours = policy.growth_hours
        reasons.append(f"{hours} 小时内新增 {len(recent)} 条（此前 {hours} 小时 {len(before)} 条）")

    if len(posts) > 1:
        total_engagement = sum(engagement(p) for p in posts)
        extra = spread_points(total_engagement, policy) - spread_points(engagement(worst_post), policy)
        if extra >= 1:
            bonus += extra
            counts = interactions(
                likes=_sum(posts, "likes"),
                comments=_sum(posts, "comments"),
                reposts=_sum(posts, "reposts"),
                views=_sum(posts, "views"),
            )
            reasons.append(f"合计互动：{counts}")

    weighty = {authorities.get(p.source_id) for p in posts} & {"official", "media"}
    worst_authority = authorities.get(worst_post.source_id, "forum")
    if weighty and worst_authority not in weighty:
        best = "official" if "official" in weighty else "media"
        bonus += policy.authority_points(best) - policy.authority_points(worst_authority)
        reasons.append("官方媒体/政府平台已关注" if best == "official" else "新闻媒体已报道")

    # The worst post's own reasons follow (its severity, tone, spread), minus its authority line
    # when a weightier source was named above.
    for line in worst.reasons:
        if line not in reasons:
            reasons.append(line)
    # Severity the worst post does not carry but another does (the news names 派出所, a forum 12345).
    seen = set(worst.severity)
    extra_found: dict[str, list[str]] = {}
    for risk, _ in graded:
        for name, terms in risk.severity.items():
            if name not in seen:
                extra_found.setdefault(name, [])
                extra_found[name].extend(t for t in terms if t not in extra_found[name])
    if extra_found:
        merged = {**worst.severity, **extra_found}
        severity_gain = _severity_points(merged, policy) - _severity_points(worst.severity, policy)
        bonus += severity_gain
        reasons.extend(r for r in _severity_reasons(extra_found) if r not in reasons)
    else:
        merged = worst.severity

    total = round(min(max(worst.score + bonus * calm, 0.0), 100.0), 1)
    return Risk(grade=policy.grade_of(total), score=total, reasons=reasons, severity=merged)
