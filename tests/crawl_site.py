"""The saved pages of tests/data/crawl served over real HTTP on 127.0.0.1, one server per site,
answering the same paths and queries as the real platforms (see that folder's README).

    with CrawlSite("weibo") as site:
        source = {"kind": "weibo", "url": site.url("/"), ...}
        ...
        assert "/api/container/getIndex" in site.paths()

Sites: weibo, tieba, tousu, liuyan (API routes); rss (one feed file at any path, ``feed=``);
generic and forum_gbk (a document root, robots.txt included). ``fail(path, status, times)``
makes the next requests to a path fail (429, 503…); ``slow(path, seconds)`` delays one;
``big(path, size)`` serves an oversized body there. Pages without a charset in Content-Type, as
the Discuz forum sends them, so the meta tag decides.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DATA = Path(__file__).parent / "data" / "crawl"


@dataclass
class Hit:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class CrawlSite:
    def __init__(self, site: str, *, feed: str | None = None, require_login: bool = False) -> None:
        self.site = site
        self.folder = DATA / site
        self.feed = feed
        self.require_login = require_login  # weibo: no SUB cookie → the not-logged-in JSON
        self.hits: list[Hit] = []
        self.failures: dict[str, list[int]] = {}
        self.delays: dict[str, float] = {}
        self.gates: dict[str, tuple[Callable[[list[str]], bool], float]] = {}
        self.big_bodies: dict[str, int] = {}
        self.extra: dict[str, tuple[str, bytes]] = {}  # path → (content type, body), added by a test
        self.redirects: dict[str, str] = {}  # path → Location of a 302, added by a test
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control -------------------------------------------------------------------------------
    def fail(self, path: str, status: int = 503, times: int = 1) -> None:
        self.failures.setdefault(path, []).extend([status] * times)

    def slow(self, path: str, seconds: float) -> None:
        self.delays[path] = seconds

    def hold(self, prefix: str, until: Callable[[list[str]], bool], timeout: float = 60.0) -> None:
        """Requests for paths under ``prefix`` wait until ``until(paths requested so far)`` holds
        (at most ``timeout``): lets a test line up several crawlers without guessing at timing."""
        self.gates[prefix] = (until, timeout)

    def big(self, path: str, size: int) -> None:
        self.big_bodies[path] = size

    def serve(self, path: str, body: bytes | str, content_type: str = "text/html; charset=utf-8") -> None:
        self.extra[path] = (content_type, body.encode() if isinstance(body, str) else body)

    def redirect(self, path: str, location: str) -> None:
        self.redirects[path] = location

    def url(self, path: str = "/") -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def paths(self) -> list[str]:
        with self._lock:
            return [h.path for h in self.hits]

    def __enter__(self) -> CrawlSite:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                site._handle(self, "GET")

            def do_POST(self) -> None:
                site._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- serving -------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.hits.append(Hit(method, path, query, body, dict(handler.headers.items())))
            pending = self.failures.get(path)
            status = pending.pop(0) if pending else None
        for prefix, (until, timeout) in self.gates.items():
            deadline = time.monotonic() + timeout
            while path.startswith(prefix) and not until(self.paths()) and time.monotonic() < deadline:
                time.sleep(0.05)
        if path in self.delays:
            time.sleep(self.delays[path])
        if status is not None:
            return self._send(handler, status, "text/plain", b"busy")
        if path in self.big_bodies:
            return self._send(handler, 200, "text/html; charset=utf-8", b"<p>" + b"x" * self.big_bodies[path])
        if path in self.redirects:
            handler.send_response(302)
            handler.send_header("Location", self.redirects[path])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        if path in self.extra:
            content_type, extra = self.extra[path]
            return self._send(handler, 200, content_type, extra)
        try:
            found = self._route(method, path, query, body, handler.headers.get("Cookie") or "")
        except FileNotFoundError:
            found = None
        if found is None:
            return self._send(handler, 404, "text/html; charset=utf-8", b"<h1>404 Not Found</h1>")
        content_type, payload = found
        self._send(handler, 200, content_type, payload)

    def _send(self, handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _file(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def _route(
        self, method: str, path: str, query: dict[str, str], body: bytes, cookie: str
    ) -> tuple[str, bytes] | None:
        as_json = "application/json; charset=utf-8"
        if self.site == "weibo":
            if self.require_login and "SUB=" not in cookie:
                return as_json, self._file("not_logged_in.json")
            if path == "/api/container/getIndex":
                page = int(query.get("page") or 1)
                name = {1: "search_page1.json", 2: "search_page2.json"}.get(page, "search_page3_empty.json")
                return as_json, self._file(name)
            if path == "/statuses/extend":
                return as_json, self._file(f"extend_{query.get('id')}.json")
        elif self.site == "tieba":
            if path == "/f":
                return "text/html; charset=utf-8", self._file(f"forum_pn{int(query.get('pn') or 0)}.html")
            if path.startswith("/p/"):
                return "text/html; charset=utf-8", self._file(f"thread_{path[3:].strip('/')}.html")
        elif self.site == "tousu":
            if path == "/api/index/s":
                return as_json, self._file(f"search_page{int(query.get('page') or 1)}.json")
            if path.startswith("/complaint/view/"):
                return "text/html; charset=utf-8", self._file(f"complaint_{path.split('/')[3]}.html")
        elif self.site == "liuyan":
            if method != "POST":
                return None
            if path == "/threads/queryThreadsList":
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                return as_json, self._file(f"queryThreadsList_fid{form.get('fid')}.json")
            envelope = json.loads(body or b"{}")
            param = json.loads(envelope.get("param") or "{}")
            if path == "/v1/threads/list/df":
                page = 2 if param.get("lastItem") else 1
                return as_json, self._file(f"v1_list_df_page{page}.json")
            if path == "/v1/threads/content":
                return as_json, self._file(f"v1_content_{param.get('tid')}.json")
        elif self.site == "rss":
            assert self.feed, "CrawlSite('rss', feed='xizi_minsheng.rss.xml')"
            return "application/xml", self._file(self.feed)
        elif self.site in {"generic", "forum_gbk"}:
            target = (self.folder / path.lstrip("/")).resolve()
            if not target.is_file() or self.folder.resolve() not in target.parents:
                return None
            kind = "text/plain" if target.suffix == ".txt" else "text/html"  # no charset: the page says
            return kind, target.read_bytes()
        return None
