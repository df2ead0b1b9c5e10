"""ASGI middleware: request ids and access logs, the request-body size limit, and the security
headers (CSP with a nonce per request on pages, frames, sniffing, Referer)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import PayloadTooLarge, error_body
from core.logging import request_id_var

log = logging.getLogger("anju.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextMiddleware:
    """Gives every request an id (kept from X-Request-ID when sane), logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Answered here, inside the request's context, so the 500 carries its request id
            # (Starlette's outermost error handler runs after this middleware has finished).
            if started_response:
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path", ""))
            await send_error(send_with_id, 500, "internal_error", "服务器内部错误，请稍后重试")
        finally:
            path = scope.get("path", "")
            if path not in ("/healthz", "/readyz") or status >= 400:
                log.info(
                    "%s %s %s %.1fms",
                    scope.get("method"),
                    path,
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with 413: at once when Content-Length says so, otherwise as
    soon as the streamed body passes it (chunked uploads cannot slip past)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, upload_max_bytes: int, upload_paths: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes
        self.upload_paths = [re.compile(p) for p in upload_paths]

    def limit_for(self, path: str) -> int:
        if any(p.search(path) for p in self.upload_paths):
            return self.upload_max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_413(send, limit)
                return
        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(_too_large_message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers to a body it could not finish reading (FastAPI turns the
            # error into a 400), the client is told the truth: 413.
            nonlocal replaced
            if exceeded:
                if not replaced:
                    replaced = True
                    await _send_413(send, limit)
                return
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _too_large_message(limit: int) -> str:
    return f"请求内容过大（上限 {limit // 1024} KB）"


async def _send_413(send: Send, limit: int) -> None:
    await send_error(send, 413, "payload_too_large", _too_large_message(limit))


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer with the API's error shape from plain ASGI code."""
    body = json.dumps(error_body(code, message), ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Headers every response carries, and a Content-Security-Policy on pages.

    Pages (text/html) may run only our own scripts: files under /static, and the inline blocks
    of our templates, which carry this request's nonce (``request.state.csp_nonce``). So a
    resident's or a crawled post's text that slipped into a page as markup would still run
    nothing, and ``javascript:`` links do not run either. Frames: none (clickjacking); content
    types are not sniffed; a Referer leaves for other sites as the origin only (pages that carry a
    token in their URL send none). API answers get the same headers and a CSP that allows nothing.
    The OpenAPI page (/api/docs) loads Swagger UI from its CDN with an inline script: it has a
    policy of its own, which allows that and nothing more.
    """

    PAGE_CSP = (
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    DOCS_CSP = (
        "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
        "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
    DOCS_PATHS = ("/api/docs", "/api/docs/oauth2-redirect")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        docs = scope.get("path", "") in self.DOCS_PATHS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                kind = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                if kind.startswith(b"text/html"):
                    csp = self.DOCS_CSP if docs else self.PAGE_CSP.format(nonce=nonce)
                else:
                    csp = self.OTHER_CSP
                for name, value in (
                    (b"content-security-policy", csp.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                ):
                    if name not in present:  # a view's own (no-referrer on token pages) wins
                        headers.append((name, value))
            await send(message)

        await self.app(scope, receive, send_with_headers)
