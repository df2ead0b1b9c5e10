"""What every spider shares: its source (configuration as data), requests that carry the source's
cookies, headers and proxy, the stats we count, and times read the way Chinese sites write them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urljoin

import scrapy
from scrapy.http import Response, TextResponse

from crawlers.schemas import BEIJING, SourceSpec

DEFAULT_MAX_PAGES = 5  # list pages (or API pages) per run; new posts are on the first ones


class SourceSpider(scrapy.Spider):
    """Base of our spiders: ``scrapy crawl``-style construction from a ``source`` dict."""

    kind: ClassVar[str] = ""

    def __init__(self, source: dict[str, Any] | SourceSpec, **kwargs: Any) -> None:
        spec = source if isinstance(source, SourceSpec) else SourceSpec(**source)
        super().__init__(name=f"{self.kind}:{spec.key}", **kwargs)
        self.source = spec

    # -- configuration -------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return self.source.config

    @property
    def max_pages(self) -> int:
        return max(1, int(self.config.get("max_pages", DEFAULT_MAX_PAGES)))

    def absolute(self, path: str) -> str:
        """A path or URL resolved against the source's URL (tests point that at 127.0.0.1)."""
        return urljoin(self.source.url, path)

    # -- requests ------------------------------------------------------------------------------
    def request(self, url: str, *, detail: bool = False, **kwargs: Any) -> scrapy.Request:
        """A request with the source's login cookies, extra headers and proxy (from configuration).

        ``detail`` marks a page that holds one post: a page already read in an earlier run is not
        fetched again (crawlers.middlewares.SeenPages). List and API pages are always fetched.
        """
        return self._configure(scrapy.Request(url, **kwargs), detail=detail)

    def form_request(self, url: str, *, formdata: dict[str, str], **kwargs: Any) -> scrapy.Request:
        return self._configure(scrapy.FormRequest(url, formdata=formdata, **kwargs), detail=False)

    def json_request(self, url: str, *, data: dict[str, Any], **kwargs: Any) -> scrapy.Request:
        from scrapy.http import JsonRequest

        return self._configure(JsonRequest(url, data=data, **kwargs), detail=False)

    def _configure(self, request: scrapy.Request, *, detail: bool) -> scrapy.Request:
        cookies = session_cookies(self.config.get("cookies"))
        if cookies:
            own: dict[Any, Any] = dict(request.cookies) if isinstance(request.cookies, dict) else {}
            merged: Any = {**dict(cookies), **own}
            request.cookies = merged
        for name, value in (self.config.get("headers") or {}).items():
            request.headers.setdefault(name, value)
        proxy = self.config.get("proxy")
        if proxy:
            request.meta.setdefault("proxy", proxy)
        if detail:
            request.meta["anju_detail"] = True
        if not detail:
            request.dont_filter = True  # list pages change between runs; read them every time
        return request

    # -- stats ---------------------------------------------------------------------------------
    def count(self, what: str, n: int = 1) -> None:
        if self.crawler is not None:
            self.crawler.stats.inc_value(f"anju/{what}", n)

    def skip_malformed(self, response: Response, why: str) -> None:
        """A page we cannot read (cut off, empty, a login or captcha wall): counted, never stored."""
        self.count(f"{self.kind}/skipped_malformed")
        self.logger.warning("skipped %s: %s", response.url, why)


def session_cookies(value: Any) -> dict[str, str]:
    """A login session from configuration: a dict, or "SUB=...; SUBP=..." as copied from a browser."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str):
        pairs = (part.strip().split("=", 1) for part in value.split(";") if "=" in part)
        return {name.strip(): val.strip() for name, val in pairs}
    return {}


def json_body(response: Response) -> Any:
    """A JSON answer, or None when it is not JSON (a login page, a captcha, a cut-off body)."""
    if not isinstance(response, TextResponse):
        return None
    try:
        return json.loads(response.text)
    except ValueError:
        return None


# -- times as Chinese sites write them ---------------------------------------------------------
_RELATIVE = re.compile(r"(\d+)\s*(秒|分钟|小时|天)前")
_CLOCK = re.compile(r"(?:(今天|昨天|前天)\s*)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_DATE = re.compile(
    r"(?:(\d{4})[-/年.])?(\d{1,2})[-/月.](\d{1,2})日?(?:[\sT]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


def parse_time(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """'2026-11-21 12:40', '11-21', '昨天 09:13', '08:12', '3 小时前', '刚刚' → an aware UTC time."""
    if not text:
        return None
    text = text.replace("\xa0", " ").strip().removeprefix("发表于").removeprefix("发布于").strip()
    local_now = (now or datetime.now(UTC)).astimezone(BEIJING)
    if text in {"刚刚", "刚才"}:
        return local_now.astimezone(UTC)
    if m := _RELATIVE.search(text):
        unit = {"秒": "seconds", "分钟": "minutes", "小时": "hours", "天": "days"}[m.group(2)]
        return (local_now - timedelta(**{unit: int(m.group(1))})).astimezone(UTC)
    if m := _CLOCK.fullmatch(text):
        back = {"今天": 0, "昨天": 1, "前天": 2}.get(m.group(1) or "今天", 0)
        day = local_now - timedelta(days=back)
        moment = day.replace(hour=int(m.group(2)), minute=int(m.group(3)), second=int(m.group(4) or 0),
                             microsecond=0)  # fmt: skip
        return moment.astimezone(UTC)
    if m := _DATE.search(text):
        year = int(m.group(1)) if m.group(1) else local_now.year
        try:
            moment = datetime(year, int(m.group(2)), int(m.group(3)), int(m.group(4) or 0),
                              int(m.group(5) or 0), int(m.group(6) or 0), tzinfo=BEIJING)  # fmt: skip
        except ValueError:
            return None
        if not m.group(1) and moment > local_now + timedelta(days=1):  # "12-30" read in January
            moment = moment.replace(year=year - 1)
        return moment.astimezone(UTC)
    return None


def from_timestamp(value: Any) -> datetime | None:
    """Unix seconds (or milliseconds) → aware UTC."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number > 1e11:
        number /= 1000
    return datetime.fromtimestamp(number, UTC)


def count_of(value: Any) -> int:
    """'1.2万' / '3,401' / 17 / None → an int."""
    if value is None:
        return 0
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().replace(",", "").replace("+", "")
    scale = 1
    if text.endswith("万"):
        scale, text = 10_000, text[:-1]
    elif text.endswith("亿"):
        scale, text = 100_000_000, text[:-1]
    try:
        return int(float(text) * scale)
    except ValueError:
        return 0


_TAG = re.compile(r"<[^>]+>")
_BR = re.compile(r"<br\s*/?>", re.I)


def html_text(fragment: str | None) -> str:
    """A fragment of HTML (a Weibo text, a highlighted title) as plain text."""
    if not fragment:
        return ""
    import html

    text = _BR.sub("\n", fragment)
    text = _TAG.sub("", text)
    return re.sub(r"[ \t\r\f\v]+", " ", html.unescape(text)).strip()
