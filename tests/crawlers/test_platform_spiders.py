"""The platform spiders (Weibo, Tieba, 黑猫投诉, 留言板) crawling the saved responses of
tests/data/crawl over real HTTP (tests/crawl_site.py), each crawl in a forked child with scrapy's
real downloader, retries and middlewares. The expected ids are the README's "Expected relevance"
tables; the fixtures' clock is 2026-11-23 11:00 +08:00."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from core.outbound import OutboundPolicy
from crawlers.runner import CrawlResult, crawl_in_child, scrapy_settings
from crawlers.spiders.base import SourceSpec
from crawlers.spiders.liuyan import compact, list_param, sign
from crawlers.spiders.tieba import list_time, parse_forum, parse_thread
from crawlers.spiders.tousu import load_answer, signature
from crawlers.spiders.weibo import needs_login, parse_search, weibo_text
from tests.crawl_site import DATA, CrawlSite
from tests.services import host_port

FIXTURE_NOW = datetime(2026, 11, 23, 11, 0, tzinfo=timezone(timedelta(hours=8)))

WEIBO_IDS = {
    "5241106630221857", "5241268934530771", "5241293018825734", "5241322145773208",
    "5241351770489120", "5241372906617364", "5241389550276615", "5241464097115538",
    "5241490261378802", "5241681245103967", "5241740612488213", "5241812975663104",
    "5241906430091578", "5242035817364420", "5242055183925716",
}  # fmt: skip
WEIBO_PAGE1_IDS = {
    "5241106630221857", "5241268934530771", "5241293018825734", "5241322145773208",
    "5241351770489120", "5241372906617364", "5241389550276615", "5241464097115538",
    "5241490261378802",
}  # fmt: skip
TIEBA_IDS = {
    "10981100215", "10987654321", "10988012457", "10988310093", "10988455120", "10989020311",
    "10968800417", "10971233008",
}  # fmt: skip
TOUSU_IDS = {
    "17402433874", "17402415590", "17402402731", "17402350017", "17402318820", "17402296615",
    "17402427013", "17402391206", "17402377458",
}  # fmt: skip
SALT = "$d6eb7ff91ee257475%"  # 黑猫投诉's signature salt, from the README
LIUYAN_V1_IDS = {"31210354", "31208877", "31205790", "31201133", "31199542"}
LIUYAN_LEGACY_IDS = {"31208877", "31205790", "31201133", "31199542"}


def crawl(site: CrawlSite, kind: str, config: dict[str, Any]) -> CrawlResult:
    spec = SourceSpec(company_id=1, key=f"test-{kind}", kind=kind, url=site.url("/"), config=config)
    allowed = OutboundPolicy.parse([host_port(site.url())])  # the fixture site, nothing else internal
    values = scrapy_settings(
        redis_url=None, collect=True, polite=False, overrides={"ANJU_OUTBOUND_POLICY": allowed}
    )
    return crawl_in_child(spec, values, timeout=60)


def by_id(result: CrawlResult) -> dict[str, dict[str, Any]]:
    items = {item["external_id"]: item for item in result.items}
    assert len(items) == len(result.items), "a post was yielded twice"
    return items


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- Weibo -------------------------------------------------------------------------------------
def test_weibo_search_reads_every_post_card_and_expands_long_text() -> None:
    with CrawlSite("weibo") as site:
        result = crawl(site, "weibo", {"keywords": ["安居物业"], "max_pages": 5})
        searches = [h for h in site.hits if h.path == "/api/container/getIndex"]
        extends = [h for h in site.hits if h.path == "/statuses/extend"]

    posts = by_id(result)
    assert set(posts) == WEIBO_IDS  # both the top-level cards and the one inside a card_group
    assert all(item["platform"] == "weibo" for item in result.items)
    # page 3 is the "这里还没有内容" end: read once, then no page 4
    assert [h.query["page"] for h in searches] == ["1", "2", "3"]
    assert searches[0].query["containerid"] == "100103type=1&q=安居物业"
    assert searches[0].query["page_type"] == "searchall"
    headers = searches[0].headers
    assert "iPhone" in headers["User-Agent"]
    assert headers["X-Requested-With"] == "XMLHttpRequest"
    assert headers["Referer"].endswith("/search?" + urlencode({"containerid": "100103type=1&q=安居物业"}))
    assert result.stat("anju/weibo/pages") == 2
    assert result.stat("anju/weibo/login_required") == 0

    first = posts["5241106630221857"]
    assert first["url"] == "https://m.weibo.cn/status/QeKmA7Rw1"
    assert first["published_at"] == utc(2026, 11, 20, 13, 47, 10)  # Fri Nov 20 21:47:10 +0800
    assert first["published_at"].utcoffset() == timedelta(0)
    assert first["text"].startswith("#安居物业# 翠湖花园3栋的电梯今晚又停了")
    for shown in ("[怒][怒]", "@安居物业官方", "杭州·翠湖花园"):  # emoticon alt, mention, location
        assert shown in first["text"]
    assert "<" not in first["text"]
    assert (first["likes"], first["comments"], first["reposts"]) == (214, 86, 37)
    author = (first["author"], first["author_followers"], first["author_verified"])
    assert author == ("翠湖三栋的小满妈", 326, False)

    official = posts["5241268934530771"]
    assert (official["author"], official["author_followers"], official["author_verified"]) == (
        "安居物业官方", 18_000, True)  # fmt: skip
    assert posts["5241812975663104"]["author_followers"] == 12_000  # "1.2万"

    # the long post: one extend request, its full text (and fresher counts) instead of "...全文"
    assert [h.query["id"] for h in extends] == ["5241322145773208"]
    assert result.stat("anju/weibo/long_text") == 1
    long_post = posts["5241322145773208"]
    assert "全文" not in long_post["text"]
    assert "如果一直拖着，我们会向住建部门投诉" in long_post["text"]
    assert "有同样情况的锦江苑邻居可以私信我" in long_post["text"]

    # a repost carries the original notice after its own words
    repost = posts["5241389550276615"]
    assert repost["text"].startswith("收到，明天记得接水[good]")
    assert "转发 @安居物业官方：【停水通知】" in repost["text"]
    assert "锦江苑1-4栋将于11月22日（周日）9:00-17:00暂停供水" in repost["text"]


def test_weibo_without_login_stores_nothing_and_stops() -> None:
    with CrawlSite("weibo", require_login=True) as site:
        result = crawl(site, "weibo", {"keywords": ["安居物业"], "max_pages": 5})
        searches = [h for h in site.hits if h.path == "/api/container/getIndex"]

    assert result.items == []
    assert result.stat("anju/weibo/login_required") == 1
    assert len(searches) == 1  # ok == -100 is "not logged in", not "no results": no paging on
    assert "mweibo-pwa" not in {name.lower() for name in searches[0].headers}


def test_weibo_session_cookie_passes_and_long_text_falls_back_when_extend_fails() -> None:
    with CrawlSite("weibo", require_login=True) as site:
        site.fail("/statuses/extend", 404, 1)
        config = {"keywords": ["安居物业"], "max_pages": 1, "cookies": "SUB=abc; XSRF-TOKEN=tok1"}
        result = crawl(site, "weibo", config)
        searches = [h for h in site.hits if h.path == "/api/container/getIndex"]

    assert set(by_id(result)) == WEIBO_PAGE1_IDS
    assert result.stat("anju/weibo/login_required") == 0
    assert [h.query["page"] for h in searches] == ["1"]  # max_pages
    headers = {name.lower(): value for name, value in searches[0].headers.items()}  # case-insensitive
    assert "SUB=abc" in headers["cookie"]
    assert headers["mweibo-pwa"] == "1" and headers["x-xsrf-token"] == "tok1"
    cut = by_id(result)["5241322145773208"]
    assert result.stat("anju/weibo/long_text_failed") == 1
    assert cut["text"].endswith("地下车库的照明坏了半年没人修 ...")  # the cut-off text, no "全文"


def test_weibo_malformed_answer_is_skipped() -> None:
    with CrawlSite("weibo") as site:
        site.serve("/api/container/getIndex", "<html><body>系统繁忙</body></html>")
        result = crawl(site, "weibo", {"keywords": ["安居物业"]})

    assert result.items == []
    assert result.stat("anju/weibo/skipped_malformed") == 1


def test_weibo_parsing_helpers() -> None:
    html = '好<span class="url-icon"><img alt=[doge] src="x.png" /></span>吧<br />下'
    assert weibo_text(html) == "好[doge]吧\n下"
    assert needs_login(json.loads((DATA / "weibo" / "not_logged_in.json").read_text()))
    assert not needs_login(json.loads((DATA / "weibo" / "search_page3_empty.json").read_text()))
    odd = {"ok": 1, "data": {"cards": [{"card_type": 9}, {"card_type": 11}, {"card_type": 10, "user": {}}]}}
    assert parse_search(odd) == []  # cards without mblog, a group without card_group


# -- Tieba -------------------------------------------------------------------------------------
def test_tieba_forum_pages_and_threads() -> None:
    with CrawlSite("tieba") as site:
        result = crawl(site, "tieba", {"forums": ["翠湖花园"], "max_pages": 5})
        lists = [h for h in site.hits if h.path == "/f"]
        threads = {h.path for h in site.hits if h.path.startswith("/p/")}

    posts = by_id(result)
    assert set(posts) == TIEBA_IDS  # pinned rules post included, page 2's threads included
    # pn=50 is the last page (no a.next): no pn=100; built on our base URL, not //tieba.baidu.com
    assert [(h.query["kw"], h.query["ie"], h.query["pn"]) for h in lists] == [
        ("翠湖花园", "utf-8", "0"), ("翠湖花园", "utf-8", "50")]  # fmt: skip
    assert threads == {f"/p/{tid}" for tid in TIEBA_IDS}
    assert result.stat("anju/tieba/items") == 8
    assert result.stat("anju/tieba/from_list") == 6  # six threads have no saved page (404)

    elevator = posts["10987654321"]
    assert elevator["url"] == "https://tieba.baidu.com/p/10987654321"
    assert elevator["title"] == "3栋电梯这个月第三次坏了，物业到底管不管"
    assert elevator["text"].startswith("昨晚九点四十左右，我妈从地库坐3栋1单元的电梯上楼")
    assert "能不能把维保记录贴在电梯里？" in elevator["text"]
    assert "阿姨没事吧" not in elevator["text"]  # only the first floor
    assert elevator["published_at"] == utc(2026, 11, 20, 14, 5)  # tail "2026-11-20 22:05" (+08)
    assert (elevator["author"], elevator["comments"]) == ("翠湖3栋住户", 5)
    assert posts["10988012457"]["published_at"] == utc(2026, 11, 21, 8, 40)  # 2-entry tail

    # no thread page: the list row is the post (title + abstract), dated by the list
    falling = posts["10989020311"]
    assert falling["title"] == "翠湖花园5栋高空坠物，花盆差点砸到小孩"
    assert falling["text"] == "昨晚十点多，5栋楼下，离玩滑板车的孩子不到两米。已经报警了。"
    assert (falling["author"], falling["comments"]) == ("西湖边的老顽童", 9)
    assert posts["10968800417"]["text"] == "安居物业的合同2027年3月到期，筹备组想先摸底大家意见。"


def test_tieba_security_verification_is_counted_never_stored() -> None:
    with CrawlSite("tieba") as site:
        site.serve("/f", (DATA / "tieba" / "security_verification.html").read_bytes())
        result = crawl(site, "tieba", {"forums": ["翠湖花园"], "max_pages": 5})
        paths = site.paths()

    assert result.items == []
    assert result.stat("anju/tieba/security_verification") == 1
    assert result.stat("anju/tieba/skipped_malformed") == 0  # recognised, not "an empty forum"
    assert paths.count("/f") == 1 and not any(p.startswith("/p/") for p in paths)


def test_tieba_parsing_helpers() -> None:
    assert list_time("08:12", now=FIXTURE_NOW) == utc(2026, 11, 23, 0, 12)
    assert list_time("11-20", now=FIXTURE_NOW) == utc(2026, 11, 19, 16, 0)
    assert list_time("2025-10", now=FIXTURE_NOW) == utc(2025, 9, 30, 16, 0)
    parsed = parse_forum((DATA / "tieba" / "forum_pn0.html").read_text())
    assert parsed is not None
    threads, has_next = parsed
    assert has_next and [t.tid for t in threads if t.pinned] == ["10981100215"]
    assert parse_forum((DATA / "tieba" / "security_verification.html").read_text()) is None
    assert parse_thread("<html><body><h3 class='core_title_txt' title='x'></h3></body></html>") is None


# -- 黑猫投诉 ----------------------------------------------------------------------------------
def test_tousu_search_pages_details_and_a_retry() -> None:
    with CrawlSite("tousu") as site:
        site.fail("/complaint/view/17402318820/", 503, 1)  # busy once, then the page
        result = crawl(site, "tousu", {"keywords": ["安居物业"], "max_pages": 5})
        searches = [h for h in site.hits if h.path == "/api/index/s"]
        details = [h.path for h in site.hits if h.path.startswith("/complaint/view/")]

    posts = by_id(result)
    assert set(posts) == TOUSU_IDS
    assert [h.query["page"] for h in searches] == ["1", "2"]  # current == page_amount on page 2
    for hit in searches:
        q = hit.query
        assert (q["keywords"], q["page_size"]) == ("安居物业", "10")
        assert len(q["rs"]) == 16 and q["ts"].isdigit()
        parts = sorted([q["ts"], q["rs"], SALT, q["keywords"], "1", q["page_size"], q["page"]])
        assert q["signature"] == hashlib.sha256("".join(parts).encode()).hexdigest()
    assert details.count("/complaint/view/17402318820/") == 2  # the 503, then the retry
    assert result.stat("retry/count") == 1
    assert result.stat("anju/tousu/detail") == 1
    assert result.stat("anju/tousu/detail_failed") == 8  # the other pages are 404

    elevator = posts["17402318820"]  # collected once, with the page's full complaint
    assert elevator["url"] == "https://tousu.sina.com.cn/complaint/view/17402318820/"
    assert elevator["title"] == "锦江苑电梯一个月坏四次，要求物业彻底维修"
    assert elevator["text"].startswith("成都锦江苑2栋电梯11月已经停运四次，11月18日晚上有邻居被困半小时。")
    assert "家里老人只能爬十一楼" in elevator["text"]  # only the page has this
    assert "投诉对象：安居示范物业服务有限公司" in elevator["text"]
    assert "投诉进度：已回复" in elevator["text"]
    assert "深表歉意" not in elevator["text"]  # the company's reply is not the complaint
    assert elevator["author"] == "成都锦江苑住户小林"
    assert elevator["published_at"] == utc(2026, 11, 20, 11, 12)  # 1795173120 = 19:12 +08

    # 404 page: the list item alone, highlight markup stripped, the target in the text
    water = posts["17402296615"]
    assert water["title"] == "安居物业翠湖花园多收二次供水加压费"
    assert water["text"].startswith("杭州翠湖花园，安居物业今年起每月在物业费之外另收")
    assert "投诉对象：安居示范物业服务有限公司" in water["text"] and "<span" not in water["text"]
    assert posts["17402427013"]["text"].count("投诉对象：安居长租公寓（上海）") == 1


def test_tousu_parsing_helpers() -> None:
    assert load_answer('try{jQuery1113_9({"result":{"data":{}}});}catch(e){};') == {"result": {"data": {}}}
    assert load_answer('{"a": 1}') == {"a": 1}
    expected = hashlib.sha256("".join(sorted(["1", "r", SALT, "kw", "1", "10", "2"])).encode())
    assert signature("1", "r", "kw", 2) == expected.hexdigest()


# -- 留言板 ------------------------------------------------------------------------------------
def test_liuyan_v1_signed_cursor_paging_and_official_reply() -> None:
    with CrawlSite("liuyan") as site:
        result = crawl(site, "liuyan", {"fid": 4417, "rows": 3, "max_pages": 5})
        calls = [h for h in site.hits if h.method == "POST"]

    posts = by_id(result)
    assert set(posts) == LIUYAN_V1_IDS
    assert [h.path for h in calls].count("/v1/threads/list/df") == 2  # page 2 has 2 < rows=3
    assert [h.path for h in calls].count("/v1/threads/content") == 1  # the answered message only
    key = hashlib.md5(b"PC42ce3bfa4980a9").hexdigest()[:16]
    assert key == "a2eb17f65d6f4b3f"  # the README's constant
    params = []
    for hit in calls:
        body = json.loads(hit.body)
        assert body["appCode"] == "PC42ce3bfa4980a9" and body["token"] == ""
        expected = hashlib.md5(f"{hit.path}{body['param']}{key}{body['token']}".encode()).hexdigest()
        assert body["signature"] == expected
        assert " " not in body["param"]
        assert hit.headers["Content-Type"].startswith("application/json")
        assert hit.headers["Referer"].endswith("/threads/list?fid=4417")
        params.append((hit.path, body["param"]))
    lists = [param for path, param in params if path == "/v1/threads/list/df"]
    assert lists == [
        '{"fid":"4417","showUnAnswer":1,"typeId":5,"lastItem":"","position":"0","rows":3,"orderType":2}',
        '{"fid":"4417","showUnAnswer":1,"typeId":5,"lastItem":"31205790","position":"0","rows":3,"orderType":2}',
    ]
    assert ("/v1/threads/content", '{"tid":"31199542","fromTrash":0}') in params

    answered = posts["31199542"]
    assert answered["url"] == "https://liuyan.people.com.cn/threads/content?tid=31199542"
    assert answered["title"] == "翠湖花园地下车库雨天积水问题"
    assert answered["text"].startswith("翠湖花园地下车库B区每逢下雨就积水")
    assert "官方回复：网友您好：经街道会同小区物业服务企业现场核查" in answered["text"]
    assert "答复单位：杭州市西湖区翠湖街道办事处" in answered["text"]
    assert answered["published_at"] == utc(2026, 11, 3, 1, 20)  # createDateline 1793668800
    assert answered["author"] == "翠***"
    assert "官方回复" not in posts["31210354"]["text"]


def test_liuyan_legacy_form_api() -> None:
    with CrawlSite("liuyan") as site:
        result = crawl(site, "liuyan", {"fid": 4417, "api": "legacy"})
        calls = [h for h in site.hits if h.method == "POST"]

    posts = by_id(result)
    assert set(posts) == LIUYAN_LEGACY_IDS
    assert len(calls) == 1 and calls[0].path == "/threads/queryThreadsList"
    assert calls[0].body.decode() == "fid=4417&state=1&lastItem=0"
    assert calls[0].headers["Referer"].endswith("/threads/list?fid=4417")
    assert "官方回复：网友您好" in posts["31199542"]["text"]  # answerContent, inline
    assert posts["31208877"]["published_at"] == utc(2026, 11, 21, 0, 12)  # dateline 1795219920


def test_liuyan_bad_signature_is_reported() -> None:
    with CrawlSite("liuyan") as site:
        site.serve("/v1/threads/list/df", '{"code":"SN0006","msg":"数据格式错误"}', "application/json")
        result = crawl(site, "liuyan", {"fid": 4417, "rows": 3, "app_code": "PCold0000000000"})
        calls = [h for h in site.hits if h.method == "POST"]

    assert result.items == []
    assert result.stat("anju/liuyan/bad_signature") == 1
    assert len(calls) == 1
    body = json.loads(calls[0].body)
    assert body["appCode"] == "PCold0000000000"  # configurable
    assert body["signature"] == sign("/v1/threads/list/df", body["param"], "PCold0000000000")


def test_liuyan_param_keeps_the_front_end_key_order() -> None:
    assert compact(list_param("4417")) == (
        '{"fid":"4417","showUnAnswer":1,"typeId":5,"lastItem":"","position":"0","rows":10,"orderType":2}'
    )
