"""Sentiment for posts about a property company: the cases general-purpose models get wrong
(a water-cut notice, sarcasm, negated complaints, questions), the eval command, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sentiment.model import classify
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("因二次供水管道漏水抢修，明天上午9点至12点3栋停水，请提前储水，给您带来不便敬请谅解。", "neu"),
        ("物业费可以在App里交吗？", "neu"),
        ("楼上漏水三天了，打了五次电话物业一直推诿，这就是你们的服务？", "neg"),
        ("呵呵，真是好物业，电梯坏了一周没人修", "neg"),
        ("维修师傅半夜冒雨来修水管，太负责了，必须点赞", "pos"),
        ("物业一点都不推诿，当天就派人来处理了，满意", "pos"),
        ("物业强制收取装修保证金，霸王条款，已投诉到12345", "neg"),
    ],
)
def test_the_posts_property_companies_care_about(text: str, label: str) -> None:
    result = classify(text)
    assert result.label == label, result
    assert -1 <= result.score <= 1


def test_the_reasons_are_words_a_pr_officer_reads() -> None:
    result = classify("物业乱收费还不作为，业主准备拉横幅维权")
    assert result.label == "neg"
    assert {"乱收费", "不作为", "拉横幅", "维权"} <= set(result.negative_words)
    notice = classify("温馨提示：本周六上午消防演练，届时请勿惊慌")
    assert "通知" in notice.cues and notice.label == "neu"


def eval_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anju.cli", "eval", "sentiment", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_eval_on_the_dev_set_reports_the_product_beside_both_baselines() -> None:
    done = eval_cli("--cases", str(DATA / "sentiment_dev.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["n"] >= 300
    assert (
        report["accuracy"] >= 0.90 and report["macro_f1"] >= 0.88
    )  # the targets (docs/BENCHMARKS.md)
    assert set(report["recall"]) == {"neg", "neu", "pos"}
    for name in ("snownlp", "pysenti"):
        assert report["baselines"][name]["macro_f1"] < report["macro_f1"]


def test_eval_refuses_a_file_with_a_wrong_label(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"text": "物业真好", "label": "pos"}\n{"text": "差", "label": "negative"}\n', encoding="utf-8"
    )
    done = eval_cli("--cases", str(bad))
    assert done.returncode == 1 and "第 2 行" in done.stderr and "neg、neu 或 pos" in done.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("not json\n", encoding="utf-8")
    assert "第 1 行" in eval_cli("--cases", str(broken)).stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert eval_cli("--cases", str(empty)).returncode == 1


def test_the_model_knows_whose_words_it_reads() -> None:
    """Issue 20: polar words in a relayed quote count apart from the writer's own; courtesy around
    a complaint and the complaint an official reply restates are not read as the writer's view."""
    from sentiment.model import read

    relayed = read("记者走访发现，多位业主表示物业长期不作为，“电梯坏了半个月没人管”。")
    assert relayed.features.get("quoted:neg", 0) > 0
    petition = read("尊敬的领导您好！我们小区垃圾三天没人清运，恳请督促整改，谢谢您的关注！")
    assert "cue:petition" in petition.features and "w:谢谢" not in petition.features
    assert not petition.positive_words  # 您好、谢谢 are courtesy, not praise
    reply = read("网友您好！您反映的小区噪音扰民问题已收悉。经核实，已责成物业公司限期整改。")
    assert "cue:restated" in reply.features and "cue:reply" in reply.features
    assert "扰民" not in reply.negative_words


def test_a_residents_own_words_are_not_read_as_a_report_or_a_reply() -> None:
    """The writer's own "我说" is not relayed speech; "昨日", "表示", "下一步", "联系电话" in a
    resident's first-person post are not a journalist's or an office's voice."""
    from sentiment.model import read

    own = read("我说物业太差劲了，他们还不承认。")
    assert own.features.get("lex:neg", 0) > 0 and not own.features.get("quoted:neg")
    relayed = read("业主王女士说物业太差劲了。")
    assert relayed.features.get("quoted:neg", 0) > 0
    post = read("昨日物业又停水，我表示很不满，下一步我要打12345，物业的联系电话根本打不通。")
    assert "cue:report" not in post.features and "cue:reply" not in post.features
    news = read("昨日，记者从住建部门获悉，该小区电梯已全部完成检修。")
    assert "cue:report" in news.features
    office = read("我局已督促物业公司整改，下一步将加强巡查，如有疑问请拨打联系电话。")
    assert "cue:reply" in office.features  # an office's 我局 is not a resident's voice


def test_curt_thanks_after_a_complaint_is_not_praise() -> None:
    from sentiment.model import classify

    for text in ("物业太垃圾了，谢谢", "物业太差劲了，谢谢您的关注"):
        assert classify(text).label == "neg", text
    assert classify("谢谢物业的保安师傅帮我找到了孩子").label == "pos"


def test_the_shipped_model_is_the_one_the_training_data_gives() -> None:
    """Every process loads sentiment/data/model.npz instead of training for seconds; it must be
    the model of today's train.jsonl, lexicon and features."""
    from sentiment import model

    shipped = model._shipped()
    assert shipped is not None, "run: python -m sentiment.model"
    texts, labels = model.training_set()
    trained = model.train(texts, labels)
    assert shipped.vocabulary == trained.vocabulary
    sample = texts[:: max(1, len(texts) // 200)]
    assert [shipped.classify(t).label for t in sample] == [trained.classify(t).label for t in sample]
