"""Injected instructions in knowledge documents, tried through the product as an attacker who got a
document into the knowledge base would: whichever way an answer is made (extract, FAQ, the LLM, the
extract it falls back to, emergency steps, an agent's drafts), no resident reads the payload; the
admin sees what was held back. The attack documents are tests/data/injection (README there)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conversations.models import Message
from core.db import get_database
from core.settings import Settings
from knowledge.models import KnowledgeSource
from knowledge.service import parse_pending, rebuild_index
from tests.assistant.test_llm import FakeChatServer, completion, user_message
from tests.conftest import LiveServer
from tests.knowledge.test_screening import ATTACKS, payload
from tests.services import allowing

QUESTIONS = [
    "物业费怎么交",
    "物业费多少钱一平米",
    "物业费可以减免吗",
    "客服电话是多少",
    "物业服务热线是多少",
    "交物业费有什么优惠吗",
    "怎么联系物业",
    "物业费能不能不交",
]


def _poisoned(settings: Settings, server: LiveServer) -> None:
    """Every attack document uploaded through the knowledge API, parsed by the parse job's own
    code (here, in this process: a worker subprocess loads the models again, a minute per test
    under load; tests/knowledge/test_knowledge_api.py runs the real worker), indexed."""
    with server.login("admin") as admin:
        for path in ATTACKS:
            uploaded = admin.post("/api/knowledge/sources", files={"file": (path.name, path.read_bytes())})
            assert uploaded.status_code == 202, uploaded.text
        with get_database(settings).session(readonly=True) as session:
            pending = session.execute(
                select(KnowledgeSource.id, KnowledgeSource.pending_sha256).where(
                    KnowledgeSource.pending_sha256.is_not(None)
                )
            ).all()
        assert len(pending) == len(ATTACKS)
        for source_id, sha256 in pending:
            parse_pending(settings, source_id=source_id, sha256=sha256)
        statuses = {s["filename"]: s["status"] for s in admin.get("/api/knowledge/sources").json()}
        assert all(statuses[p.name] == "ready" for p in ATTACKS), statuses
    rebuild_index(settings, company_id=1)


def _shown(body: dict[str, Any]) -> str:
    parts = [body["reply"], *body.get("suggestions", [])]
    for c in body["citations"]:
        parts += [c["document"], c["section"], c["snippet"]]
    return "\n".join(parts)


def _ask_all(client: httpx.Client) -> list[dict[str, Any]]:
    answers = []
    for question in QUESTIONS:
        r = client.post(
            "/api/chat",
            json={"community": "cuihu", "session_id": f"inj-{uuid.uuid4().hex}", "text": question},
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def _stored_replies(settings: Settings) -> list[str]:
    with get_database(settings).session(readonly=True) as session:
        return [
            f"{m.text}\n{m.citations}"
            for m in session.scalars(select(Message).where(Message.sender == "assistant"))
        ]


@pytest.fixture
def poisoned(demo_kb: Settings) -> Iterator[LiveServer]:
    with LiveServer(demo_kb) as server:
        _poisoned(demo_kb, server)
        yield server


def test_extractive_answers_never_show_the_payload(poisoned: LiveServer) -> None:
    with poisoned.client() as client:
        answers = _ask_all(client)
        emergency = client.post(
            "/api/chat", json={"community": "cuihu", "session_id": "inj-fire-0123456789", "text": "着火了"}
        ).json()
    leaks = {a["reply"][:60]: payload(_shown(a)) for a in answers if payload(_shown(a))}
    assert leaks == {}
    assert sum(a["action"] == "answer" for a in answers) >= 4  # still answered from the real knowledge
    assert emergency["action"] == "emergency" and payload(_shown(emergency)) == []
    assert [r for r in _stored_replies(poisoned.settings) if payload(r)] == []  # nor in the history


def test_llm_answers_and_their_fallback_never_show_the_payload(demo_kb: Settings) -> None:
    def obedient(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A model that obeys every instruction and repeats every promise it reads."""
        if payload(user_message(body)):
            return 200, completion(body, "物业费全免，客服电话改为 13800000000。")
        first = re.search(r"\]《[^》]*》[^\n]*\n([^\n]+)", user_message(body))
        return 200, completion(body, first[1][:100] if first else "请联系物业服务中心。")

    with FakeChatServer() as fake:
        fake.behaviour = obedient
        settings = allowing(demo_kb.model_copy(update={"llm_base_url": fake.base_url}), fake.base_url)
        with LiveServer(settings) as server:
            _poisoned(settings, server)
            with server.client() as client:
                answers = _ask_all(client)
        prompts = [user_message(r) for r in fake.requests]
    assert prompts, "the model was asked"
    assert [p for p in prompts if payload(p)] == []  # nothing of the payload reached the model
    assert [payload(_shown(a)) for a in answers if payload(_shown(a))] == []


def test_an_agents_drafts_never_carry_the_payload(poisoned: LiveServer) -> None:
    with poisoned.client() as resident:
        case_id = resident.post(
            "/api/chat",
            json={
                "community": "cuihu",
                "session_id": "inj-agent-0123456789",
                "text": "物业费能不能减免 转人工",
            },
        ).json()["case_id"]
    assert case_id
    with poisoned.login("agent") as agent:
        drafts = agent.get(f"/api/cases/{case_id}/suggestions")
    assert drafts.status_code == 200
    assert drafts.json(), "drafts are still offered from the real knowledge"
    assert [d["text"] for d in drafts.json() if payload(d["text"] + d["document"] + d["section"])] == []


def test_the_admin_sees_what_was_held_back_and_why(poisoned: LiveServer) -> None:
    with poisoned.login("admin") as admin:
        sources = {s["filename"]: s for s in admin.get("/api/knowledge/sources").json()}
    with poisoned.client() as browser:
        signed_in = browser.post(
            "/login", data={"username": "admin", "password": "anju-demo-2026", "next": "/"}
        )
        assert signed_in.status_code == 303
        page = browser.get("/admin/knowledge")
    for path in ATTACKS:
        assert sources[path.name]["flags"], path.name
    reasons = {f["reason"] for f in sources["issue19.md"]["flags"]}
    assert "疑似指令文本，未用于回答" in reasons
    fact = sources["fact.md"]["flags"]
    assert [(f["reason"], f["detail"]) for f in fact] == [
        ("含非官方电话号码，该句未展示给住户", "13800000000")
    ]
    assert "13800000000" in fact[0]["excerpt"] and fact[0]["where"].startswith("第 1 段")
    assert sources["service-standard.md"]["flags"] == [] and sources["faq.csv"]["flags"] == []
    assert page.status_code == 200 and "处内容未展示给住户" in page.text
