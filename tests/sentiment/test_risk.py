"""Risk grades Ⅰ–Ⅳ as a PR officer meets them: the falling flowerpot and the trapped grandmother
are Ⅰ/Ⅱ, an ordinary complaint Ⅲ/Ⅳ, a notice, a question or praise not graded however many likes
they have; the reasons are in Chinese; the thresholds are the operator's, and a bad setting is
refused with a message that says what is expected."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.db import get_database
from core.settings import Settings
from sentiment.risk import GRADE_NAMES, RiskPolicy, grade_label, grade_post, severity_terms
from tests.sentiment.stories import (
    CUIHU_WATER_FEE,
    FLOWERPOT_WEIBO,
    GATE_WEIBO,
    GROUP_WEIBO,
    LIFT_WEIBO,
    NOW,
    PRAISE_WEIBO,
    QUESTION_WEIBO,
    WATER_NOTICE,
    Story,
    at,
    demo_company,
    store,
    unsaved_post,
)

POLICY = RiskPolicy()


def test_the_posts_of_the_fixtures_get_the_grades_a_pr_officer_expects(demo: Settings) -> None:
    with get_database(demo).session() as session:
        company = demo_company(session)
        graded = {}
        for name, story in {
            "flowerpot": FLOWERPOT_WEIBO,
            "lift": LIFT_WEIBO,
            "group": GROUP_WEIBO,
            "gate": GATE_WEIBO,
            "fee": CUIHU_WATER_FEE,
            "notice": WATER_NOTICE,
            "praise": PRAISE_WEIBO,
            "question": QUESTION_WEIBO,
        }.items():
            post = store(session, company, story)
            authority = company.sources[story.source].authority
            graded[name] = grade_post(post=post, authority=authority, now=NOW, policy=POLICY)

    flowerpot = graded["flowerpot"]
    assert flowerpot.grade in (1, 2), flowerpot
    assert any(r.startswith("负面情绪明显（-") for r in flowerpot.reasons)
    assert "涉及人身安全：高空坠物" in flowerpot.reasons
    assert "传播较广：点赞 2874、评论 356、转发 412" in flowerpot.reasons
    assert "自媒体发布" in flowerpot.reasons and "24 小时内发布" in flowerpot.reasons

    lift = graded["lift"]
    assert lift.grade in (1, 2), lift
    assert any(r.startswith("涉及人身安全：电梯") for r in lift.reasons)

    group = graded["group"]
    assert group.grade in (1, 2), group
    assert any(r.startswith("群体性事件迹象：") and "一起去街道" in r for r in group.reasons)
    assert "6 小时内发布" in group.reasons

    for ordinary in ("gate", "fee"):
        assert graded[ordinary].grade in (3, 4), graded[ordinary]
    assert "收费争议：乱收费" in graded["fee"].reasons
    assert "论坛/投诉平台发帖" in graded["fee"].reasons

    for calm in ("notice", "praise", "question"):
        assert graded[calm].grade is None, graded[calm]
    assert "通知/公告类内容，风险调低" in graded["notice"].reasons
    assert any(r.startswith("正面评价") for r in graded["praise"].reasons)
    assert "咨询提问，风险调低" in graded["question"].reasons


def test_big_numbers_do_not_make_a_notice_or_praise_a_risk() -> None:
    viral = dict(likes=50_000, comments=8_000, reposts=12_000, author_followers=900_000, author_verified=True)
    lift_notice = Story(
        "weibo",
        "n1",
        "【电梯维保通知】翠湖花园3栋电梯将于11月24日9:00-12:00停运保养，届时请走楼梯，给您带来不便敬请谅解。",
        published_at=NOW - timedelta(hours=1),
        **viral,
    )
    notice = grade_post(post=unsaved_post(lift_notice), authority="official", now=NOW, policy=POLICY)
    assert notice.grade in (None, 4), notice
    praise = grade_post(
        post=unsaved_post(PRAISE_WEIBO.but(published_at=NOW - timedelta(hours=1), **viral)),
        authority="official",
        now=NOW,
        policy=POLICY,
    )
    assert praise.grade in (None, 4), praise


def test_deaths_and_fire_with_spread_are_grade_one() -> None:
    fire = Story(
        "weibo",
        "f1",
        "翠湖花园3栋昨晚起火，一名老人身亡，消防通道被车堵死，消防车进不来！物业平时从来不管，出了人命谁负责？",
        published_at=NOW - timedelta(hours=3),
        likes=5200,
        comments=1300,
        reposts=2100,
    )
    risk = grade_post(post=unsaved_post(fire), authority="self_media", now=NOW, policy=POLICY)
    assert risk.grade == 1, risk
    assert "涉及人身安全：人身伤亡、火灾" in risk.reasons
    assert risk.label == "Ⅰ级（红）"


def test_what_did_not_happen_is_not_a_reason() -> None:
    found = severity_terms("小区车库昨晚冒烟，消防及时处置，未造成人员伤亡，也没有人受伤。")
    assert "火灾" in found and "人身伤亡" not in found


def test_an_official_fresh_post_weighs_more_than_the_same_post_on_a_forum_last_week() -> None:
    fresh = unsaved_post(GATE_WEIBO.but(published_at=NOW - timedelta(hours=2)))
    official = grade_post(post=fresh, authority="official", now=NOW, policy=POLICY)
    forum = grade_post(post=fresh, authority="forum", now=NOW, policy=POLICY)
    assert official.score > forum.score
    assert "官方媒体/政府平台发布" in official.reasons and "6 小时内发布" in official.reasons
    old = grade_post(
        post=unsaved_post(GATE_WEIBO.but(published_at=at(12, 9))), authority="forum", now=NOW, policy=POLICY
    )
    assert old.score < forum.score
    assert "发布已超过 7 天" in old.reasons


def test_a_post_that_names_only_the_community_counts_a_little_less() -> None:
    both = grade_post(post=unsaved_post(GATE_WEIBO), authority="forum", now=NOW, policy=POLICY)
    weak = grade_post(
        post=unsaved_post(GATE_WEIBO, matched=("锦江苑",)), authority="forum", now=NOW, policy=POLICY
    )
    assert weak.score < both.score
    assert "提及：安居物业、翠湖花园" in both.reasons


def test_thresholds_are_configurable() -> None:
    post = unsaved_post(LIFT_WEIBO)
    default = grade_post(post=post, authority="self_media", now=NOW, policy=POLICY)
    strict = RiskPolicy.from_text("95，90，85，80")
    lenient = RiskPolicy.from_text(" 50 40 30 10 ")
    assert strict.thresholds == (95.0, 90.0, 85.0, 80.0)
    assert grade_post(post=post, authority="self_media", now=NOW, policy=strict).grade is None
    assert grade_post(post=post, authority="self_media", now=NOW, policy=lenient).grade == 1
    assert default.grade == 2
    assert RiskPolicy.from_text("80,60,40,20") == RiskPolicy()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("80,60,40", "expected 4 numbers"),
        ("80,60,40,20,10", "expected 4 numbers"),
        ("", "expected 4 numbers"),
        ("80,sixty,40,20", "not all numbers"),
        ("80,60,60,20", "strictly decreasing"),
        ("20,40,60,80", "strictly decreasing"),
        ("120,60,40,20", "from 0 to 100"),
        ("80,60,40,nan", "from 0 to 100"),
    ],
)
def test_a_bad_threshold_setting_is_refused_with_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        RiskPolicy.from_text(text)
    assert "80,60,40,20" in str(error.value) or "0 to 100" in str(error.value)


def test_grade_names() -> None:
    assert GRADE_NAMES == {1: "Ⅰ级（红）", 2: "Ⅱ级（橙）", 3: "Ⅲ级（黄）", 4: "Ⅳ级（蓝）"}
    assert grade_label(3) == "Ⅲ级（黄）" and grade_label(None) == "未定级"
