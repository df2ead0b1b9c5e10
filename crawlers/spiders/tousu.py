"""黑猫投诉 (tousu.sina.com.cn): keyword search (JSON), then each complaint's page (HTML).

Format (see tests/data/crawl/README.md, section 3):

- ``GET /api/index/s?ts={ms}&rs={16 random}&signature={…}&keywords={kw}&page_size=10&page=N``,
  ``signature = sha256("".join(sorted([ts, rs, "$d6eb7ff91ee257475%", keywords, "1", page_size,
  page])))``. The answer is ``{"result": {"status": {"code": 0}, "data": {"lists": [...], "pager":
  {"current", "next", "page_amount", "item_count"}}}}`` (JSONP ``try{jQuery…(…);}catch(e){};`` when a
  ``callback`` is sent; the wrapper is stripped). Paging stops when ``current == page_amount``, the
  list is empty, or at ``max_pages``.
- A list item: ``main.sn`` (id), ``main.title`` / ``summary`` / ``cotitle`` (the company complained
  about; may carry keyword-highlight HTML, stripped), ``appeal``, ``issue``, ``cost``, ``timestamp``
  (Unix seconds), ``status`` (1 通过审核, 3 待分配, 4 处理中, 6 已回复, 7 已完成, 8 已关闭),
  ``url`` (protocol-relative), ``author.title`` (nickname).
- ``GET /complaint/view/{sn}/``: ``div.ts-d-question h1``, ``ul.ts-q-list > li`` facts
  (``<label>投诉对象：</label>…``), and the timeline ``div.ts-d-steplist div.ts-d-item``; the
  complainant's own step (``发起投诉``) holds the full complaint. When that page fails (404, a ban)
  the post is built from the list item alone.

The complaint target, problem, demand and progress are written into the post's text
("投诉对象：安居示范物业服务有限公司"), so relevance sees the company even when the complainant
does not name it.

Configuration (``SourceSpec.config``):

    keywords: ["安居物业", "安居示范物业"]   # one search per keyword
    max_pages: 5                             # result pages (10 complaints each) per keyword
    cookies: "SUB=..."                       # a logged-in session, if the search asks for one
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import scrapy
from parsel import Selector
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawlers.spiders.base import SourceSpider, from_timestamp, html_text, parse_time
from sentiment.service import CrawledPost

SIGN_SALT = "$d6eb7ff91ee257475%"
SEARCH_TYPE = "1"
PAGE_SIZE = 10
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
STATUS = {1: "通过审核", 3: "待分配", 4: "处理中", 6: "已回复", 7: "已完成", 8: "已关闭"}
_JSONP = re.compile(
    r"^\s*(?:try\s*\{)?\s*[\w$.]+\s*\((.*)\)\s*;?\s*(?:\}\s*catch\s*\(\s*\w*\s*\)\s*\{\s*\}\s*;?)?\s*$", re.S
)


@dataclass(frozen=True)
class Complaint:
    """A list item: the facts of one complaint and where its page is."""

    sn: str
    title: str
    summary: str
    target: str
    issue: str
    appeal: str
    status: str
    author: str | None
    published_at: datetime | None
    path: str  # /complaint/view/{sn}/

    @property
    def url(self) -> str:
        return f"https://tousu.sina.com.cn/complaint/view/{self.sn}/"

    def post(self, body: str | None = None) -> CrawledPost:
        return CrawledPost(
            platform="tousu",
            external_id=self.sn,
            url=self.url,
            title=self.title or None,
            text=complaint_text(body or self.summary or self.title, self),
            author=self.author,
            published_at=self.published_at,
        )


# -- pure parsing ------------------------------------------------------------------------------
def signature(ts: str, rs: str, keywords: str, page: int, page_size: int = PAGE_SIZE) -> str:
    parts = sorted([ts, rs, SIGN_SALT, keywords, SEARCH_TYPE, str(page_size), str(page)])
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def search_query(keywords: str, page: int, *, now_ms: int | None = None, rs: str | None = None) -> str:
    ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
    rs = rs or "".join(random.choices(string.ascii_letters + string.digits, k=16))
    return urlencode(
        {
            "ts": ts,
            "rs": rs,
            "signature": signature(ts, rs, keywords, page),
            "keywords": keywords,
            "page_size": PAGE_SIZE,
            "page": page,
        }
    )


def load_answer(text: str) -> Any:
    """JSON, or JSONP (``try{jQuery…({...});}catch(e){};``) with the wrapper stripped."""
    if m := _JSONP.match(text):
        text = m.group(1)
    return json.loads(text)


def complaint_text(body: str, complaint: Complaint) -> str:
    facts = [
        ("投诉对象", complaint.target),
        ("投诉问题", complaint.issue),
        ("投诉要求", complaint.appeal),
        ("投诉进度", complaint.status),
    ]
    lines = [body.strip()] + [f"{label}：{value}" for label, value in facts if value]
    return "\n".join(line for line in lines if line)


def parse_item(item: dict[str, Any]) -> Complaint:
    main = item.get("main") or {}
    author = item.get("author") or {}
    sn = str(main["sn"]).strip()
    if not sn:
        raise ValueError("complaint without a number")
    status = str(main.get("status") or "")
    link = str(main.get("url") or f"//tousu.sina.com.cn/complaint/view/{sn}/")
    return Complaint(
        sn=sn,
        title=html_text(main.get("title")),
        summary=html_text(main.get("summary")),
        target=html_text(main.get("cotitle")),
        issue=html_text(main.get("issue")),
        appeal=html_text(main.get("appeal")),
        status=STATUS.get(int(status), "") if status.isdigit() else status,
        author=html_text(author.get("title")) or None,
        published_at=from_timestamp(main.get("timestamp")),
        path=urlsplit(link).path or f"/complaint/view/{sn}/",
    )


def parse_search(data: Any) -> tuple[list[Complaint], dict[str, Any]]:
    """(the complaints, the pager) of a search answer. Raises ValueError when it is not one."""
    result = (data or {}).get("result") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        raise ValueError("no result")
    code = (result.get("status") or {}).get("code", 0)
    if str(code) != "0":
        raise ValueError(f"status {code}: {(result.get('status') or {}).get('msg')}")
    payload = result.get("data") or {}
    items = payload.get("lists")
    if items is None:
        items = payload.get("complaints") or []
    complaints = []
    for item in items:
        try:
            complaints.append(parse_item(item))
        except (KeyError, TypeError, ValueError):
            continue
    return complaints, payload.get("pager") or {}


def last_page(pager: dict[str, Any], page: int) -> bool:
    try:
        return int(pager.get("current") or page) >= int(pager["page_amount"])
    except (KeyError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Step:
    """One entry of a complaint's timeline (发起投诉, 投诉已分配至商家, 商家已回复…)."""

    name: str
    status: str
    date: datetime | None
    text: str


def parse_step(item: Selector) -> Step:
    return Step(
        name=(item.css("span.u-name::text").get() or "").strip(),
        status=(item.css("span.u-status::text").get() or "").strip(),
        date=parse_time(item.css("span.u-date::text").get()),
        text="\n".join(t.strip() for t in item.css("div.ts-d-cont ::text").getall() if t.strip()),
    )


def parse_detail(page: str, complaint: Complaint) -> CrawledPost | None:
    """The complaint page: the full complaint text and its facts, or None when it is not one."""
    selector = Selector(text=page)
    question = selector.css("div.ts-d-question")
    if not question:
        return None
    title = " ".join(question.css("h1 ::text").getall()).strip()
    facts: dict[str, str] = {}
    for li in question.css("ul.ts-q-list > li"):
        label = (li.css("label::text").get() or "").strip().rstrip("：:")
        value = " ".join(
            t.strip() for t in li.xpath("./node()[not(self::label)]//text() | ./text()").getall()
        )
        if label:
            facts[label] = value.strip()
    steps = sorted(
        (parse_step(item) for item in selector.css("div.ts-d-steplist div.ts-d-item")),
        key=lambda step: step.date.timestamp() if step.date else 0.0,
    )  # oldest first: the complaint, then the platform's and the company's answers
    complainant = (question.css("div.ts-q-user span.u-name::text").get() or complaint.author or "").strip()
    body = next((step.text for step in steps if "发起投诉" in step.status and step.text), "")
    if not body:
        body = next((step.text for step in steps if step.name == complainant and step.text), "")
    merged = replace(
        complaint,
        title=title or complaint.title,
        target=facts.get("投诉对象") or complaint.target,
        issue=facts.get("投诉问题") or complaint.issue,
        appeal=facts.get("投诉要求") or complaint.appeal,
        status=facts.get("投诉进度") or complaint.status,
        author=complainant or complaint.author,
        published_at=complaint.published_at
        or parse_time(question.css("div.ts-q-user span.u-date::text").get()),
    )
    return merged.post(body or None)


# -- the spider --------------------------------------------------------------------------------
class TousuSpider(SourceSpider):
    kind = "tousu"

    @property
    def keywords(self) -> list[str]:
        value = self.config.get("keywords") or []
        return [value] if isinstance(value, str) else [str(k) for k in value if str(k).strip()]

    def headers(self, keyword: str) -> dict[str, str]:
        return {
            "User-Agent": str(self.config.get("user_agent") or BROWSER_UA),
            "Referer": self.absolute("/index/search/?" + urlencode({"keywords": keyword, "t": 1})),
            "X-Requested-With": "XMLHttpRequest",
            "Accept": "application/json, text/javascript, */*; q=0.01",
        }

    async def start(self) -> Any:
        if not self.keywords:
            self.logger.warning("tousu source %s has no keywords configured", self.source.key)
            return
        for keyword in self.keywords:
            yield self.search(keyword, 1)

    def search(self, keyword: str, page: int) -> scrapy.Request:
        return self.request(
            self.absolute("/api/index/s?" + search_query(keyword, page)),
            callback=self.parse_page,
            headers=self.headers(keyword),
            cb_kwargs={"keyword": keyword, "page": page},
        )

    def parse_page(
        self, response: Response, keyword: str = "", page: int = 1, **kwargs: Any
    ) -> Iterator[scrapy.Request]:
        try:
            data = load_answer(response.text) if isinstance(response, TextResponse) else None
            complaints, pager = parse_search(data)
        except ValueError as exc:
            self.skip_malformed(response, f"search answer unreadable: {exc}")
            return
        self.count("tousu/pages")
        for complaint in complaints:
            yield self.request(
                self.absolute(complaint.path),
                detail=True,
                callback=self.parse_complaint,
                errback=self.complaint_failed,
                headers={"User-Agent": str(self.config.get("user_agent") or BROWSER_UA)},
                cb_kwargs={"complaint": complaint},
            )
        if complaints and not last_page(pager, page) and page < self.max_pages:
            yield self.search(keyword, page + 1)

    def parse_complaint(
        self, response: Response, complaint: Complaint | None = None, **kwargs: Any
    ) -> Iterator[CrawledPost]:
        assert complaint is not None
        post = parse_detail(response.text, complaint) if isinstance(response, TextResponse) else None
        if post is None:
            self.skip_malformed(response, "not a complaint page")
            post = complaint.post()
        else:
            self.count("tousu/detail")
        self.count("tousu/items")
        yield post

    def complaint_failed(self, failure: Failure) -> Iterator[CrawledPost]:
        if failure.check(IgnoreRequest) and not failure.check(HttpError):
            return  # read in an earlier run (SeenPages); HttpError is an IgnoreRequest too
        complaint: Complaint | None = failure.request.cb_kwargs.get("complaint")  # type: ignore[attr-defined]
        self.count("tousu/detail_failed")
        self.logger.info("complaint page failed (%s); using the list item", failure.getErrorMessage())
        if complaint is not None:
            self.count("tousu/items")
            yield complaint.post()
