"""No server error from any input: a bounded schemathesis run over every operation of the API.

Schemathesis generates requests from the OpenAPI document (valid ones and ones that break its
rules: wrong types, huge numbers, odd strings) and sends them over real HTTP to the app with the
demo admin's token. Whatever it sends, the answer must be a response the client can act on: never
a 5xx. The run is bounded (a fixed number of examples per operation, no shrinking, a fixed seed)
so it takes the same time on every run; ANJU_FUZZ_EXAMPLES raises it for a longer local run.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from core.settings import Settings
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("ANJU_FUZZ_EXAMPLES", "10"))  # per operation and mode
# Streams never end; they are read by their own tests.
SKIP = {"GET /api/console/stream", "GET /api/opinion/stream", "GET /api/chat/stream"}


def fuzz(
    operation: Any, mode: GenerationMode, base_url: str, http: requests.Session, token: str
) -> list[str]:
    """Send ``EXAMPLES`` generated requests to one operation; the server errors, described."""
    name = f"{operation.method.upper()} {operation.path}"
    failures: list[str] = []

    @seed(20261207)
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def probe(case: Any) -> None:
        response = case.call(base_url=base_url, session=http, headers={"Authorization": token}, timeout=30)
        SENT[0] += 1
        if response.status_code >= 500:
            failures.append(
                f"{name} {mode.value}: {response.status_code} {case.path_parameters} {case.query} "
                f"{str(case.body)[:200]!r} → {response.text[:200]}"
            )

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no parameters, no body)
        probe()
    return failures


SENT = [0]


# On PostgreSQL only: its types are the stricter ones (32-bit integers, no NUL in text), so what
# passes there passes on SQLite; the run takes minutes, not worth twice.
@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_no_input_gets_a_server_error(demo: Settings) -> None:
    with LiveServer(demo) as live, live.login("admin") as admin:
        token = admin.headers["Authorization"]
        schema = schemathesis.openapi.from_dict(admin.get("/api/openapi.json").json())
        http = requests.Session()
        failures: list[str] = []
        for result in schema.get_all_operations():
            operation = result.ok()
            if f"{operation.method.upper()} {operation.path}" in SKIP:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failures += fuzz(operation, mode, live.url, http, token)
        print(f"schemathesis: {SENT[0]} requests, {len(failures)} server errors")
        assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:60])
