"""Named domain errors. Services raise these; one handler in the web assembly maps them to HTTP.

``message`` is what a person reads (Simplified Chinese); ``code`` is stable for programs.
"""

from __future__ import annotations

from typing import Any

from core.logging import request_id_var


class AnjuError(Exception):
    status_code = 400
    code = "bad_request"
    default_message = "请求无效"

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class NotFound(AnjuError):
    status_code = 404
    code = "not_found"
    default_message = "找不到该记录"


class Unauthorized(AnjuError):
    status_code = 401
    code = "unauthorized"
    default_message = "请先登录"


class Forbidden(AnjuError):
    status_code = 403
    code = "forbidden"
    default_message = "没有权限执行此操作"


class Conflict(AnjuError):
    status_code = 409
    code = "conflict"
    default_message = "记录已存在或状态冲突"


class Gone(AnjuError):
    status_code = 410
    code = "gone"
    default_message = "该链接或记录已失效"


class InvalidInput(AnjuError):
    status_code = 422
    code = "invalid_input"
    default_message = "提交的数据有误"


class PayloadTooLarge(AnjuError):
    status_code = 413
    code = "payload_too_large"
    default_message = "请求内容过大"


class TooManyRequests(AnjuError):
    status_code = 429
    code = "too_many_requests"
    default_message = "操作过于频繁，请稍后再试"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape of the whole API, with the current request's id."""
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_var.get()}
    if details is not None:
        error["details"] = details
    return {"error": error}
