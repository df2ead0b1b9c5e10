"""claim_effect: an effect recorded in the transaction that applies it happens once."""

import threading

import pytest

from core.db import get_database
from core.idempotency import claim_effect
from core.models import EffectRecord
from core.settings import Settings


def test_second_claim_is_refused(settings: Settings) -> None:
    db = get_database(settings)
    with db.session() as session:
        assert claim_effect(session, "reply:1", job_id="j1") is True
        assert claim_effect(session, "reply:1", job_id="j1") is False  # same transaction
    with db.session() as session:
        assert claim_effect(session, "reply:1", job_id="j2") is False  # a retried job
        assert claim_effect(session, "reply:2") is True


def test_claim_rolled_back_with_its_effect_can_be_claimed_again(settings: Settings) -> None:
    db = get_database(settings)
    with pytest.raises(RuntimeError), db.session() as session:
        assert claim_effect(session, "notify:7") is True
        raise RuntimeError("the worker died before commit")
    with db.session() as session:
        assert session.get(EffectRecord, "notify:7") is None
        assert claim_effect(session, "notify:7") is True


def test_racing_claims_let_exactly_one_through(settings: Settings) -> None:
    db = get_database(settings)
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        try:
            barrier.wait()
            with db.session() as session:
                results.append(claim_effect(session, "survey:42"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # On PostgreSQL the losers either see the row or hit the unique key; both are "already claimed".
    assert not errors, errors
    assert sorted(results) == [False, False, False, True]
