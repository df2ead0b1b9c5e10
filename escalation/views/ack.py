"""The acknowledgement link of an emergency page: a page (not JSON) whoever got the page opens
without logging in, and the button that takes the emergency.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from core.deps import SessionDep, SettingsDep
from core.errors import Gone, NotFound
from core.masking import mask_text
from core.routing import CommittingRoute
from core.settings import Settings
from escalation import paging
from escalation.models import Case

router = APIRouter(tags=["console"], route_class=CommittingRoute)


# Token-bearing pages: the token stays out of Referer headers and caches.
_LINK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


@router.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack_page(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    try:
        case = paging.case_for_ack_token(session=session, settings=settings, token=token)
    except (NotFound, Gone) as exc:
        return _ack_refused(exc, settings)
    return HTMLResponse(_ack_html(case, done=case.acknowledged_at is not None), headers=_LINK_HEADERS)


@router.post("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
def ack(token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Whoever got the page takes the emergency (the link is the credential: it names one case)."""
    try:
        case = paging.case_for_ack_token(session=session, settings=settings, token=token)
    except (NotFound, Gone) as exc:
        return _ack_refused(exc, settings)
    level = case.page_level or 0
    chain = paging.duty_chain(session=session, community_id=case.community_id)
    who = chain[level].name if level < len(chain) else "值班人员"
    paging.acknowledge(session=session, settings=settings, case=case, by=who)
    return HTMLResponse(_ack_html(case, done=True), headers=_LINK_HEADERS)


def _ack_refused(exc: NotFound | Gone, settings: Settings) -> HTMLResponse:
    """A page, not JSON: whoever opens the link reads why it does nothing and where to go."""
    from html import escape

    if isinstance(exc, Gone):
        why = (f"这条紧急通知发出已超过 {settings.ack_link_hours} 小时，链接不能再用来确认。"
               "如事件仍需处理，请登录客服工作台查看。")  # fmt: skip
    else:
        why = "链接不完整或已被修改。如需处理紧急事件，请登录客服工作台，或直接联系值班主管。"
    page = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(exc.message)}</title><link rel='stylesheet' href='/static/anju.css'></head>"
        f"<body class='ack'><h1>{escape(exc.message)}</h1><p>{why}</p>"
        "<p><a href='/login?next=/console'>登录客服工作台</a></p></body></html>"
    )
    return HTMLResponse(page, exc.status_code, headers=_LINK_HEADERS)


def _ack_html(case: Case, *, done: bool) -> str:
    from html import escape

    summary = escape(mask_text(case.summary[-400:]))
    what = escape(case.emergency_kind or case.category.value)
    body = (
        f"<p class='ok'>已确认（{escape(case.acknowledged_by or '')}），请立即前往处置。</p>"
        if done
        else "<form method='post'><button type='submit'>我来处理</button></form>"
    )
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>紧急事件 {case.id}</title><link rel='stylesheet' href='/static/anju.css'></head>"
        f"<body class='ack'><h1>紧急事件：{what}（案件 {case.id}）</h1>"
        f"<pre>{summary}</pre>{body}</body></html>"
    )
