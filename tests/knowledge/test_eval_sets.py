"""The labelled retrieval sets stay answerable: every expected substring is still in some chunked
passage or FAQ entry (a change to the chunker or the demo FAQ that breaks a label shows here, not
as a silent drop in hit@3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.faq import read_faq_table
from knowledge.ingest import parse_document
from tests.knowledge.test_ingestion import CORPUS, needs_corpus

DATA = Path(__file__).resolve().parents[1] / "data"
FAQ = Path(__file__).resolve().parents[2] / "knowledge" / "demo" / "faq.csv"
COMMUNITIES = {"cuihu": 1, "翠湖花园": 1, "jinjiang": 2, "锦江苑": 2, "binjiang": 3, "滨江壹号": 3}


def _searchable() -> list[tuple[str, frozenset[int] | None]]:
    """Each item's text as the evaluation matches it, with the communities that see it (None: all)."""
    assert CORPUS is not None
    items: list[tuple[str, frozenset[int] | None]] = []
    for path in sorted(CORPUS.glob("*.txt")):
        doc = parse_document(path.name, path.read_bytes())
        items += [(f"{doc.title}\n{p.section()}\n{p.text}", None) for p in doc.passages]
    table = read_faq_table(FAQ.name, FAQ.read_bytes(), communities=COMMUNITIES)
    assert not table.errors
    for row in table.rows:
        items.append((f"{row.question}\n{row.answer}", frozenset(row.community_ids) or None))
    return items


@needs_corpus
@pytest.mark.parametrize("name", ["retrieval_dev", "retrieval_holdout", "retrieval_blind"])
def test_every_label_is_found_in_an_item_its_community_sees(name: str) -> None:
    items = _searchable()
    lines = (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    assert len(cases) >= 46
    unfound = []
    for case in cases:
        community = COMMUNITIES[case.get("community", "cuihu")]
        visible = [text for text, scope in items if scope is None or community in scope]
        for expected in case["expect_any"]:
            if not any(expected in text for text in visible):
                unfound.append((case["q"], expected))
    assert not unfound, unfound
