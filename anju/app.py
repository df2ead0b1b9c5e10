"""The FastAPI application factory: routers, middleware, one error shape, lifespan resources."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.db import get_database
from core.errors import AnjuError, error_body
from core.logging import configure_logging
from core.redis import get_redis
from core.settings import Mode, Settings, get_settings

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent

_HTTP_MESSAGES = {
    400: "请求体无法解析",  # Starlette's own words for a body it could not read (e.g. a 5,000-digit number)
    404: "找不到该页面或接口",
    405: "不支持该请求方法",
    401: "请先登录",
    403: "没有权限",
}


def _validation_details(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return (
            400,
            "请求体不是合法的 JSON",
            [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors],
        )
    details = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")}
        for e in errors
    ]
    return 422, "提交的数据有误，请检查字段", details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AnjuError)
    async def _anju_error(request: Request, exc: AnjuError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, details = _validation_details(exc)
        code = "malformed_body" if status == 400 else "invalid_input"
        return JSONResponse(error_body(code, message, details), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            exc.detail
            if isinstance(exc.detail, str) and exc.status_code not in _HTTP_MESSAGES
            else (_HTTP_MESSAGES.get(exc.status_code, str(exc.detail)))
        )
        return JSONResponse(
            error_body(f"http_{exc.status_code}", message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        """A value the database cannot hold (a number past its integer range, a NUL character in
        PostgreSQL text) that no schema bound caught: the request's fault, answered as one. The
        transaction was rolled back by the session dependency."""
        log.warning(
            "unstorable value in %s %s: %s", request.method, request.url.path, str(exc).split("\n")[0]
        )
        return JSONResponse(
            error_body("invalid_input", "提交的数据超出允许范围或含有无法保存的字符"), status_code=422
        )

    # Anything else is answered by RequestContextMiddleware, where the request id is still known.


def warm_assistant(settings: Settings) -> None:
    """Load the embeddings model, the intent model, the LLM client if one is configured and each
    company's index (the API does it in the background; a worker before it forks, so every job
    inherits them), so the first resident of the day does not wait for them."""
    try:
        from sqlalchemy import select

        from assistant import intent, llm
        from knowledge.retrieval import get_search
        from knowledge.text import tokens
        from org.models import Company

        tokens("物业费怎么交")  # jieba loads its dictionary on first use: 0.8 s
        search = get_search(settings)
        search.embed_query("物业费怎么交")
        intent.model_for(search.encoder)
        llm.preload(settings)  # an operator's LLM: its client and SDK, 3 s of imports otherwise paid per job
        with get_database(settings).session(readonly=True) as session:
            for company_id in session.scalars(select(Company.id)):
                loaded = search.index_for(session, company_id)
                if loaded is not None:
                    _ = loaded.passages.dense, loaded.faq.dense  # build the FAISS indexes now
        # Hundreds of thousands of long-lived objects (jieba's dictionary, the models' tables) now
        # sit in the collector's oldest generation; each full collection walked them all and
        # stalled requests for a good part of a second. Frozen, they are never walked again.
        gc.collect()
        gc.freeze()
        log.info("assistant warmed up")
    except Exception:  # a cold start is slower, not broken: the first turn loads what is missing
        log.warning("assistant warm-up failed", exc_info=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    from anju import wiring

    wiring.connect()
    configure_logging(level=settings.log_level, json_lines=settings.json_logs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from anju.backup import in_use

        with in_use(settings):  # `anju restore` refuses while the API runs on this data folder
            app.state.database = get_database(settings)
            app.state.redis = get_redis(settings)
            settings.signing_key()  # demo mode: generate the key before the first login needs it
            anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
            app.state.llm_limiter = anyio.CapacityLimiter(settings.llm_threads)
            if settings.warm_assistant:
                threading.Thread(
                    target=warm_assistant, args=(settings,), name="warm-assistant", daemon=True
                ).start()
            log.info("anju API ready on %s", settings.base_url)
            yield

    app = FastAPI(
        title="安居 anju",
        description="物业 AI 客服与舆情监测服务 (AI customer service and opinion monitoring)",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)

    from accounts.views import router as accounts_router
    from anju import health, pages
    from channels.chat_views import router as chat_router
    from channels.views import api as conversations_router
    from channels.views import router as channels_router
    from crawlers.views import router as crawl_router
    from escalation.views import router as escalation_router
    from knowledge.views import router as knowledge_router
    from org.views import router as org_router
    from sentiment.views import router as opinion_router

    # Routes are matched in order, at some 20 µs per router passed: the channels, which take every
    # resident's message under load, come first.
    app.include_router(channels_router)
    app.include_router(health.router)
    app.include_router(accounts_router)
    app.include_router(org_router)
    app.include_router(knowledge_router)
    app.include_router(chat_router)
    app.include_router(conversations_router)
    app.include_router(escalation_router)
    app.include_router(opinion_router)
    app.include_router(crawl_router)
    app.include_router(pages.router)
    if settings.mode is Mode.demo:
        from crawlers.demo_site import router as demo_site_router

        app.include_router(demo_site_router)  # what the demo's opinion sources crawl
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    from anju.middleware import BodySizeLimitMiddleware, RequestContextMiddleware, SecurityHeadersMiddleware

    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_max_bytes=settings.max_upload_bytes,
        # Uploads get the larger limit; each checks its own (work-order photos: 5 MB, as documented).
        upload_paths=[
            r"/imports$",
            r"/upload",
            r"^/api/knowledge/sources(/\d+)?$",
            r"^/api/work-orders/\d+/photos$",
        ],
    )
    app.add_middleware(SecurityHeadersMiddleware)  # errors answered by the size limit too
    app.add_middleware(RequestContextMiddleware)  # every response carries the request id
    if settings.trusted_proxies:
        # Outermost, so everything inside sees the client the proxy saw. The server itself never
        # reads X-Forwarded-For (`anju serve` turns uvicorn's own reading off): only these peers
        # may name a client, and the right-most address they did not add themselves is taken.
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app
