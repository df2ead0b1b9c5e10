"""人民网 领导留言板 (liuyan.people.com.cn): the messages of one board (a leader, e.g. 杭州市委书记).

Two generations of API (see tests/data/crawl/README.md, section 4); ``api`` picks one.

- ``v1`` (the current site, default). Every call is ``POST`` with a JSON body
  ``{"appCode": …, "token": "", "signature": …, "param": "<JSON string>"}`` where
  ``signature = md5(path + param + md5(appCode)[:16] + token)`` and ``param`` is serialised without
  spaces in the front end's key order.
  - ``/v1/threads/list/df``, param ``{"fid","showUnAnswer","typeId","lastItem","position","rows",
    "orderType"}``: items in ``resultData.data[]``; cursor paging with ``lastItem =
    resultData.lastItem``, stopping when fewer than ``rows`` items come back or ``lastItem`` is empty.
  - ``/v1/threads/content``, param ``{"tid","fromTrash"}``: ``resultData.contentList[]``, where
    ``dataType`` 4 entries are official replies. Read for answered messages only (``lastAnswerTime``
    or state 已办理/已回复); the reply is appended to the text ("官方回复：…", "答复单位：…").
  - A wrong signature (``appCode`` changes when the site is redeployed; it is in
    ``window.SITE_CONFIG``) answers ``{"code": "SN0006"}``: counted (``anju/liuyan/bad_signature``)
    and logged.
- ``legacy``: ``POST /threads/queryThreadsList`` with the form ``fid, state, lastItem``; answers
  ``{"result": "success", "success": true, "responseData": [...]}`` with the reply inline
  (``answerContent``, ``answerOrganization``).

Posts link to ``https://liuyan.people.com.cn/threads/content?tid={tid}``.

Configuration (``SourceSpec.config``):

    fid: 4417                    # the board (required)
    api: v1                      # v1 (default) | legacy
    max_pages: 5                 # list pages per run
    rows: 10                     # v1 page size
    app_code: PC42ce3bfa4980a9   # v1 appCode (alias appCode), from window.SITE_CONFIG
    token: ""                    # v1 login token, empty for anonymous reading
    type_id: 5                   # v1 list typeId as the board page sends it
    state: 1                     # legacy: 1 全部, 2 待回复, 3 办理中, 4 已办理
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from crawlers.spiders.base import SourceSpider, from_timestamp, html_text, json_body
from sentiment.service import CrawledPost

DEFAULT_APP_CODE = "PC42ce3bfa4980a9"
LIST_PATH = "/v1/threads/list/df"
CONTENT_PATH = "/v1/threads/content"
LEGACY_PATH = "/threads/queryThreadsList"
LEGACY_ROWS = 10  # the legacy list's page size
BAD_SIGNATURE = "SN0006"
OFFICIAL_REPLY = 4  # contentList dataType of an official answer
ANSWERED = {"已回复", "已办理", "已办结"}
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


class BadSignature(ValueError):
    """The v1 API rejected the signature (``SN0006``)."""


# -- pure parsing ------------------------------------------------------------------------------
def compact(param: dict[str, Any]) -> str:
    """``param`` as the front end's JSON.stringify writes it: no spaces, keys in insertion order."""
    return json.dumps(param, separators=(",", ":"), ensure_ascii=False)


def sign(path: str, param: str, app_code: str = DEFAULT_APP_CODE, token: str = "") -> str:
    key = hashlib.md5(app_code.encode()).hexdigest()[:16]
    return hashlib.md5(f"{path}{param}{key}{token}".encode()).hexdigest()


def envelope(
    path: str, param: dict[str, Any], app_code: str = DEFAULT_APP_CODE, token: str = ""
) -> dict[str, str]:
    text = compact(param)
    return {
        "appCode": app_code,
        "token": token,
        "signature": sign(path, text, app_code, token),
        "param": text,
    }


def list_param(fid: str, last_item: str = "", rows: int = 10, type_id: int = 5) -> dict[str, Any]:
    """The board list's param, keys in the front end's order."""
    return {
        "fid": str(fid),
        "showUnAnswer": 1,
        "typeId": type_id,
        "lastItem": last_item,
        "position": "0",
        "rows": rows,
        "orderType": 2,
    }


def content_param(tid: str) -> dict[str, Any]:
    return {"tid": str(tid), "fromTrash": 0}


def thread_url(tid: Any) -> str:
    return f"https://liuyan.people.com.cn/threads/content?tid={tid}"


def result_data(data: Any) -> dict[str, Any]:
    """``resultData`` of a v1 answer. Raises BadSignature on SN0006, ValueError on other errors."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    code = data.get("code")
    if code == BAD_SIGNATURE:
        raise BadSignature(str(data.get("msg") or BAD_SIGNATURE))
    if code not in (None, 0, "0", 200, "200"):
        raise ValueError(f"code {code}: {data.get('msg')}")
    result = data.get("resultData")
    if not isinstance(result, dict):
        raise ValueError("no resultData")
    return result


def with_reply(text: str, reply: str, organization: str | None = None) -> str:
    reply = html_text(reply)
    if not reply:
        return text
    signed = f"\n答复单位：{organization}" if organization else ""
    return f"{text}\n\n官方回复：{reply}{signed}"


def parse_thread(item: dict[str, Any]) -> CrawledPost:
    """A message of either API (the legacy one carries its reply inline)."""
    tid = str(item["tid"]).strip()
    if not tid:
        raise ValueError("message without a tid")
    text = html_text(item.get("content"))
    if item.get("answerContent"):
        text = with_reply(text, str(item["answerContent"]), item.get("answerOrganization"))
    published = from_timestamp(item.get("createDateline") or item.get("dateline"))
    return CrawledPost(
        platform="liuyan",
        external_id=tid,
        url=thread_url(tid),
        title=html_text(item.get("subject")) or None,
        text=text or html_text(item.get("subject")),
        author=item.get("nickName") or None,
        published_at=published,
    )


def answered(item: dict[str, Any]) -> bool:
    return bool(item.get("lastAnswerTime")) or str(item.get("stateInfo") or "") in ANSWERED


def parse_list(data: Any) -> tuple[list[dict[str, Any]], str]:
    """(the items, the cursor for the next page) of a v1 list answer."""
    result = result_data(data)
    items = [i for i in result.get("data") or [] if isinstance(i, dict) and i.get("tid")]
    return items, str(result.get("lastItem") or "")


def parse_content(data: Any, post: CrawledPost) -> CrawledPost:
    """The post with the official replies of a v1 content answer appended."""
    result = result_data(data)
    text = post.text
    for entry in result.get("contentList") or []:
        if isinstance(entry, dict) and entry.get("dataType") == OFFICIAL_REPLY:
            text = with_reply(text, str(entry.get("content") or ""), entry.get("organization"))
    return replace(post, text=text)


def parse_legacy(data: Any) -> list[CrawledPost]:
    if not isinstance(data, dict) or not (data.get("success") or data.get("result") == "success"):
        raise ValueError(f"legacy answer not successful: {str(data)[:80]}")
    posts = []
    for item in data.get("responseData") or []:
        try:
            posts.append(parse_thread(item))
        except (KeyError, TypeError, ValueError):
            continue
    return posts


# -- the spider --------------------------------------------------------------------------------
class LiuyanSpider(SourceSpider):
    kind = "liuyan"

    @property
    def fid(self) -> str:
        return str(self.config.get("fid") or "").strip()

    @property
    def app_code(self) -> str:
        return str(self.config.get("app_code") or self.config.get("appCode") or DEFAULT_APP_CODE)

    @property
    def token(self) -> str:
        return str(self.config.get("token") or "")

    @property
    def rows(self) -> int:
        return max(1, int(self.config.get("rows", 10)))

    @property
    def headers(self) -> dict[str, str]:
        parts = urlsplit(self.source.url)
        return {
            "User-Agent": str(self.config.get("user_agent") or BROWSER_UA),
            "Referer": self.absolute(f"/threads/list?fid={self.fid}"),
            "Origin": f"{parts.scheme}://{parts.netloc}",
            "Accept": "application/json, text/plain, */*",
        }

    async def start(self) -> Any:
        if not self.fid:
            self.logger.warning("liuyan source %s has no board (fid) configured", self.source.key)
            return
        api = str(self.config.get("api") or "v1")
        if api == "legacy":
            yield self.legacy_page("0", 1)
        elif api == "v1":
            yield self.list_page("", 1)
        else:
            self.logger.warning("liuyan source %s: unknown api %r (v1 or legacy)", self.source.key, api)

    # -- v1 ------------------------------------------------------------------------------------
    def call(self, path: str, param: dict[str, Any], **kwargs: Any) -> scrapy.Request:
        return self.json_request(
            self.absolute(path),
            data=envelope(path, param, self.app_code, self.token),
            dumps_kwargs={"sort_keys": False, "ensure_ascii": False, "separators": (",", ":")},
            headers=self.headers,
            **kwargs,
        )

    def list_page(self, last_item: str, page: int) -> scrapy.Request:
        param = list_param(self.fid, last_item, self.rows, int(self.config.get("type_id", 5)))
        return self.call(LIST_PATH, param, callback=self.parse_list, cb_kwargs={"page": page})

    def parse_list(self, response: Response, page: int = 1, **kwargs: Any) -> Iterator[Any]:
        try:
            items, last_item = parse_list(json_body(response))
        except BadSignature as exc:
            self.bad_signature(exc)
            return
        except ValueError as exc:
            self.skip_malformed(response, f"list answer unreadable: {exc}")
            return
        self.count("liuyan/pages")
        for item in items:
            try:
                post = parse_thread(item)
            except (KeyError, TypeError, ValueError) as exc:
                self.skip_malformed(response, f"unreadable message: {exc!r}")
                continue
            if answered(item):
                yield self.call(
                    CONTENT_PATH,
                    content_param(post.external_id),
                    callback=self.parse_content,
                    errback=self.content_failed,
                    cb_kwargs={"post": post},
                )
                continue
            self.count("liuyan/items")
            yield post
        if len(items) >= self.rows and last_item and page < self.max_pages:
            yield self.list_page(last_item, page + 1)

    def parse_content(
        self, response: Response, post: CrawledPost | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        assert post is not None
        try:
            post = parse_content(json_body(response), post)
            self.count("liuyan/replies")
        except BadSignature as exc:
            self.bad_signature(exc)
        except ValueError as exc:
            self.skip_malformed(response, f"content answer unreadable: {exc}")
        self.count("liuyan/items")
        yield post  # the message itself is known from the list either way

    def content_failed(self, failure: Failure) -> Iterator[CrawledPost]:
        post: CrawledPost | None = failure.request.cb_kwargs.get("post")  # type: ignore[attr-defined]
        self.count("liuyan/detail_failed")
        self.logger.info("message content failed (%s); using the list item", failure.getErrorMessage())
        if post is not None:
            self.count("liuyan/items")
            yield post

    def bad_signature(self, exc: Exception) -> None:
        self.count("liuyan/bad_signature")
        self.logger.warning(
            "liuyan rejected the request signature (%s, %s): the site's appCode has probably changed; "
            "set the source's app_code from window.SITE_CONFIG",
            BAD_SIGNATURE,
            exc,
        )

    # -- legacy --------------------------------------------------------------------------------
    def legacy_page(self, last_item: str, page: int) -> scrapy.Request:
        form = {"fid": self.fid, "state": str(self.config.get("state", 1)), "lastItem": last_item}
        return self.form_request(
            self.absolute(LEGACY_PATH),
            formdata=form,
            headers={**self.headers, "X-Requested-With": "XMLHttpRequest"},
            callback=self.parse_legacy,
            cb_kwargs={"page": page},
        )

    def parse_legacy(self, response: Response, page: int = 1, **kwargs: Any) -> Iterator[Any]:
        try:
            posts = parse_legacy(json_body(response))
        except ValueError as exc:
            self.skip_malformed(response, f"legacy list unreadable: {exc}")
            return
        self.count("liuyan/pages")
        for post in posts:
            self.count("liuyan/items")
            yield post
        if len(posts) >= LEGACY_ROWS and page < self.max_pages:
            yield self.legacy_page(posts[-1].external_id, page + 1)
