"""Local stand-ins for the services the intake talks to, in one small process on 127.0.0.1:

- ``POST /v1/chat/completions``: an OpenAI-compatible LLM that sleeps ``--llm-delay`` seconds,
  then answers with a fixed sentence that the answer guard accepts (no number, phone or URL);
- ``GET /cgi-bin/token`` and ``POST /cgi-bin/message/custom/send``: WeChat's access-token and
  customer-service message endpoints (``ANJU_WECHAT_API_BASE``);
- ``POST /anju/replies``: the resident app's webhook receiver (``ANJU_APP_WEBHOOK_URL``). Each
  receipt is checked against the signature (channels.signing) and appended, one JSON object a
  line and flushed at once, to ``--record``;
- ``GET /stats``: counters.

    .venv/bin/python -m bench.fakes --port 8011 --record /tmp/x/receipts.jsonl --llm-delay 10

The benchmark scripts start it as a child process (its own interpreter: recording thousands of
webhooks does not compete with the load generator for the GIL) and read the record at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

LLM_REPLY = "您好，请按资料中的说明办理；如有疑问可以转人工客服。"


def build_app(*, record: str, llm_delay: float, webhook_secret: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from channels.signing import NONCE, SIGNATURE, TIMESTAMP, sign

    counts: dict[str, int] = {
        "llm": 0,
        "llm_active": 0,
        "token": 0,
        "wechat_sent": 0,
        "webhook": 0,
        "webhook_bad_signature": 0,
    }
    out = open(record, "a", encoding="utf-8")  # noqa: SIM115  closed with the process

    def write(entry: dict[str, Any]) -> None:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        out.flush()

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        counts["llm"] += 1
        counts["llm_active"] += 1
        try:
            await asyncio.sleep(llm_delay)
        finally:
            counts["llm_active"] -= 1
        return JSONResponse(
            {
                "id": f"chatcmpl-bench-{counts['llm']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "bench"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": LLM_REPLY},
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
        )

    async def token(request: Request) -> JSONResponse:
        counts["token"] += 1
        return JSONResponse({"access_token": f"bench-token-{counts['token']}", "expires_in": 7200})

    async def custom_send(request: Request) -> JSONResponse:
        body = await request.json()
        counts["wechat_sent"] += 1
        write(
            {
                "kind": "wechat",
                "t": time.time(),
                "touser": body.get("touser"),
                "text": (body.get("text") or {}).get("content", "")[:80],
            }
        )
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def webhook(request: Request) -> PlainTextResponse:
        raw = await request.body()
        headers = request.headers
        ok = bool(webhook_secret) and headers.get(SIGNATURE, "") == sign(
            webhook_secret, headers.get(TIMESTAMP, ""), headers.get(NONCE, ""), raw
        )
        if not ok:
            counts["webhook_bad_signature"] += 1
            return PlainTextResponse("bad signature", status_code=403)
        data = json.loads(raw)
        counts["webhook"] += 1
        write(
            {
                "kind": "app",
                "t": time.time(),
                "delivery_id": data.get("delivery_id"),
                "reply_to": data.get("reply_to"),
                "user_id": data.get("user_id"),
                "action": data.get("action"),
                "reply": str(data.get("reply", ""))[:80],
            }
        )
        return PlainTextResponse("ok")

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(counts)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/cgi-bin/token", token, methods=["GET"]),
            Route("/cgi-bin/message/custom/send", custom_send, methods=["POST"]),
            Route("/anju/replies", webhook, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True, help="JSONL file: one line per webhook / WeChat send")
    parser.add_argument("--llm-delay", type=float, default=10.0, help="seconds before the LLM answers")
    parser.add_argument("--webhook-secret", default=os.environ.get("BENCH_WEBHOOK_SECRET", ""))
    args = parser.parse_args()
    app = build_app(record=args.record, llm_delay=args.llm_delay, webhook_secret=args.webhook_secret)
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, timeout_keep_alive=30
    )


if __name__ == "__main__":
    main()
