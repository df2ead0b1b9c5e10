"""Headers an attacker's page meets: every page the service serves carries a Content-Security-Policy
that lets only our own scripts run (the files under /static and inline blocks with this response's
nonce) and that our own pages satisfy — checked here on every page's markup, so a template that
adds an inline handler or a style attribute fails — no framing, no sniffing, and a Referer policy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser

import httpx

from tests.conftest import LiveServer

PASSWORD = "anju-demo-2026"
PAGES = {  # path -> who opens it
    "/login": None,
    "/chat/cuihu": None,
    "/": "admin",
    "/console": "supervisor",
    "/opinion": "pr",
    "/admin/opinion": "admin",
    "/admin/knowledge": "admin",
}


class _Markup(HTMLParser):
    """Everything in a page that a strict CSP would refuse or that needs the nonce."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.nonces: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…> inline handler")
            if name == "style":
                self.problems.append(f"<{tag} style=…> style attribute")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                ("javascript:", "data:")
            ):
                self.problems.append(f"<{tag} {name}={value}>")
        if tag == "script" and not (values.get("src") or "").startswith("/static/"):
            self.nonces.append(values.get("nonce"))
        if tag == "style":
            self.nonces.append(values.get("nonce"))
        if (
            tag == "link"
            and values.get("rel") == "stylesheet"
            and not (values.get("href") or "").startswith("/static/")
        ):
            self.problems.append(f"stylesheet from {values.get('href')}")


@contextmanager
def _browser(server: LiveServer, user: str | None) -> Iterator[httpx.Client]:
    with server.client() as browser:
        if user:
            assert browser.post("/login", data={"username": user, "password": PASSWORD}).status_code == 303
        yield browser


def _nonce(csp: str) -> str:
    match = re.search(r"script-src 'self' 'nonce-([A-Za-z0-9_-]+)'", csp)
    assert match, csp
    return match.group(1)


def test_every_page_satisfies_its_own_content_security_policy(server: LiveServer) -> None:
    for path, user in PAGES.items():
        with _browser(server, user) as browser:
            page = browser.get(path)
            again = browser.get(path)
        _check_page(path, page, again)


def _check_page(path: str, page: httpx.Response, again: httpx.Response) -> None:
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
                      "connect-src 'self'", "form-action 'self'"):  # fmt: skip
        assert directive in csp, (path, directive)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    nonce = _nonce(csp)
    assert _nonce(again.headers["content-security-policy"]) != nonce  # one per response
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "strict-origin-when-cross-origin"

    markup = _Markup()
    markup.feed(page.text)
    assert markup.problems == [], path
    assert all(n == nonce for n in markup.nonces), (
        path,
        markup.nonces,
    )  # every inline block runs, none other
    for script in re.findall(r"<script[^>]*>(.*?)</script>", page.text, re.S):
        assert not re.search(r"\beval\(|new Function\(|setAttribute\(\s*['\"](on|style)", script), path


def test_api_answers_and_static_files_are_not_sniffed_or_framed(server: LiveServer) -> None:
    with server.client() as anyone, server.login("agent") as agent:
        for response in (
            agent.get("/api/auth/me"),
            anyone.get("/api/cases"),  # an error answer too
            anyone.get("/static/anju.css"),
            anyone.get("/static/vendor/chart.umd.min.js"),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            if not response.url.path.startswith("/static/"):
                assert (
                    response.headers["content-security-policy"]
                    == "default-src 'none'; frame-ancestors 'none'"
                )
        docs = anyone.get("/api/docs")  # Swagger UI: its CDN and its inline script, nothing else
        assert docs.status_code == 200 and "frame-ancestors 'none'" in docs.headers["content-security-policy"]


def test_token_pages_send_no_referer(server: LiveServer) -> None:
    with server.client() as anyone:
        for path in ("/ack/garbage", "/opinion/ack/garbage"):
            page = anyone.get(path)
            assert page.status_code == 404 and page.headers["referrer-policy"] == "no-referrer"
            assert "nonce-" in page.headers["content-security-policy"]
