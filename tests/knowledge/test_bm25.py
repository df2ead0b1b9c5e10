"""BM25 over jieba tokens with the property dictionary and colloquial mappings."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from knowledge.bm25 import K1, B, BM25Index
from knowledge.ingest import parse_document
from knowledge.text import correct_typos, expand_query, tokens
from tests.knowledge.test_ingestion import CORPUS, CORPUS_FILES, needs_corpus


def _reference_bm25(docs: list[list[str]], query: list[str]) -> list[float]:
    """The textbook formula, one document at a time."""
    n = len(docs)
    average = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        score = 0.0
        for term in set(query):
            if term not in tf:
                continue
            idf = math.log1p((n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf[term] * (K1 + 1) / (tf[term] + K1 * (1 - B + B * len(doc) / average))
        scores.append(score)
    return scores


def test_sparse_scores_equal_the_textbook_formula() -> None:
    docs = [["电梯", "困人", "救援"], ["电梯", "保养"], ["物业费", "缴费", "缴费", "发票"], ["停水", "通知"]]
    index = BM25Index(docs)
    for query in (["电梯", "困人"], ["缴费"], ["电梯", "电梯", "通知"], ["不存在"]):
        assert np.allclose(index.scores(query), _reference_bm25(docs, query), atol=1e-5), query
    assert index.top(["不存在"]) == []
    assert [i for i, _ in index.top(["电梯", "困人"], k=2)] == [0, 1]


def test_domain_words_stay_whole_and_colloquial_phrases_map_to_standard_terms() -> None:
    assert "电梯困人" in tokens("电梯困人应急处置标准")
    assert "物业费" in tokens("物业费在哪交")
    assert "燃气泄漏" in tokens(expand_query("家里有股煤气味"))
    assert "电梯困人" in tokens(expand_query("电梯停了我被关里面了"))
    assert "缴费" in tokens(expand_query("交物业费"))
    assert tokens("停水") == ["停水"] and tokens("？？？") == []


def test_homophone_slips_of_domain_words_are_corrected_and_real_words_left_alone() -> None:
    assert correct_typos("电体不动了 跟谁说") == "电梯不动了 跟谁说"
    assert correct_typos("物业非咋交，拉圾也没人收") == "物业费咋交，垃圾也没人收"
    assert correct_typos("天然气味好大") == "天然气味好大"  # "然气" is not corrected inside 天然气
    assert correct_typos("保修期过了吗") == "保修期过了吗"  # a word of its own (warranty)
    assert "电梯" in tokens(expand_query("电体坏了"))


@needs_corpus
@pytest.mark.parametrize(
    ("question", "section"),
    [
        ("电梯停了我被关里面了", "3.2 电梯困人应急处置标准"),
        ("闻到煤气味怎么办", "3.3 燃气泄漏应急处置标准"),
        ("楼上扔东西下来砸到车了", "3.10 高空坠物应急处置标准"),
        ("巡查频次是多少", "(二)巡查频次"),
    ],
)
def test_colloquial_questions_find_the_standard_section(question: str, section: str) -> None:
    assert CORPUS is not None
    passages = []
    for name in CORPUS_FILES:
        document = parse_document(name, (CORPUS / name).read_bytes())
        passages += [(p.section(), p.text) for p in document.passages]
    index = BM25Index([tokens(f"{s} {t}") for s, t in passages])
    [(best, _score)] = index.top(tokens(expand_query(question)), k=1)
    assert passages[best][0].endswith(section)
